package conformance

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
)

// callTimeout is the deadline SPIRE puts on every KeyManager call.
const callTimeout = 30 * time.Second

// key is a generated key the suite signs with.
type key struct {
	t   engine.KeyType
	pk  engine.PublicKey
	pub crypto.PublicKey
}

// suite is one run of the conformance cases against one plugin.
type suite struct {
	p    *pluginhost.Plugin
	caps Capabilities
	keys map[engine.KeyType]*key // by type, in caps.KeyTypes order
}

// Run runs the conformance suite. newPlugin returns a launched, configured
// plugin holding no keys; Run calls it once and generates each key type
// once (twice for the replace case), so that slow key types such as
// RSA-4096 stay affordable.
func Run(t *testing.T, newPlugin func(t *testing.T) *pluginhost.Plugin, caps Capabilities) {
	t.Helper()
	if len(caps.KeyTypes) == 0 {
		t.Fatal("conformance: Capabilities.KeyTypes is empty")
	}
	for _, kt := range caps.KeyTypes {
		if len(caps.Hashes[kt]) == 0 && len(caps.PSS[kt]) == 0 {
			t.Fatalf("conformance: Capabilities.Hashes and PSS have no hashes for %v", kt)
		}
	}
	s := &suite{p: newPlugin(t), caps: caps, keys: map[engine.KeyType]*key{}}

	// Not subtests: every case below needs the plugin empty at first and
	// then holding one key of each type, whatever -run selects.
	s.checkEmpty(t)
	s.generateKeys(t)

	t.Run("GetPublicKey", s.testGetPublicKey)
	t.Run("GetPublicKeys", s.testGetPublicKeys)
	t.Run("NotFound", s.testNotFound)
	t.Run("InvalidArgument", s.testInvalidArgument)
	t.Run("SignData", s.testSignData)
	t.Run("Replace", s.testReplace)
	t.Run("ConcurrentSignData", s.testConcurrentSignData)
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func keyID(t engine.KeyType) string { return "conformance-" + t.String() }

// checkEmpty checks that the new plugin holds no key.
func (s *suite) checkEmpty(t *testing.T) {
	t.Helper()
	keys, err := s.p.GetPublicKeys(callCtx(t))
	if err != nil {
		t.Fatalf("GetPublicKeys on a new plugin: %v", err)
	}
	if len(keys) != 0 {
		t.Fatalf("GetPublicKeys on a new plugin returned %d keys, want none: %v", len(keys), keys)
	}
}

// generateKeys generates one key of each type and checks its public key.
func (s *suite) generateKeys(t *testing.T) {
	t.Helper()
	for _, kt := range s.caps.KeyTypes {
		id := keyID(kt)
		start := time.Now()
		pk, err := s.p.GenerateKey(callCtx(t), id, kt)
		if err != nil {
			t.Fatalf("GenerateKey(%s, %v): %v", id, kt, err)
		}
		pub, err := checkPublicKey(pk, id, kt)
		if err != nil {
			t.Fatalf("GenerateKey(%s, %v): %v", id, kt, err)
		}
		t.Logf("GenerateKey(%s) took %v", kt, time.Since(start).Round(time.Millisecond))
		s.keys[kt] = &key{t: kt, pk: pk, pub: pub}
	}
}

func (s *suite) testGetPublicKey(t *testing.T) {
	for _, kt := range s.caps.KeyTypes {
		t.Run(kt.String(), func(t *testing.T) {
			want := s.keys[kt].pk
			got, err := s.p.GetPublicKey(callCtx(t), want.ID)
			if err != nil {
				t.Fatalf("GetPublicKey(%s): %v", want.ID, err)
			}
			if _, err := checkPublicKey(got, want.ID, kt); err != nil {
				t.Fatalf("GetPublicKey(%s): %v", want.ID, err)
			}
			if !equalKeys(got, want) {
				t.Errorf("GetPublicKey(%s) = %s, want the generated %s", want.ID, got.Fingerprint, want.Fingerprint)
			}
		})
	}
}

func (s *suite) testGetPublicKeys(t *testing.T) {
	got, err := s.p.GetPublicKeys(callCtx(t))
	if err != nil {
		t.Fatalf("GetPublicKeys: %v", err)
	}
	byID := map[string]engine.PublicKey{}
	for _, k := range got {
		if _, dup := byID[k.ID]; dup {
			t.Errorf("GetPublicKeys lists %s twice", k.ID)
		}
		byID[k.ID] = k
	}
	if len(got) != len(s.keys) {
		t.Errorf("GetPublicKeys returned %d keys, want %d", len(got), len(s.keys))
	}
	for _, kt := range s.caps.KeyTypes {
		want := s.keys[kt].pk
		k, ok := byID[want.ID]
		switch {
		case !ok:
			t.Errorf("GetPublicKeys does not list %s", want.ID)
		case !equalKeys(k, want):
			t.Errorf("GetPublicKeys lists %s with fingerprint %s, want %s", want.ID, k.Fingerprint, want.Fingerprint)
		}
	}
}

func (s *suite) testNotFound(t *testing.T) {
	const missing = "conformance-missing"
	d, _ := digest(crypto.SHA256)
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"GetPublicKey", func(ctx context.Context) error {
			_, err := s.p.GetPublicKey(ctx, missing)
			return err
		}},
		{"SignData", func(ctx context.Context) error {
			_, _, err := s.p.SignData(ctx, missing, d, crypto.SHA256)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(callCtx(t)); status.Code(err) != codes.NotFound {
				t.Errorf("%s(%s) = %v, want NotFound", tt.name, missing, err)
			}
		})
	}
}

// invalidCase is one request that must be answered with InvalidArgument.
type invalidCase struct {
	name string
	call func(ctx context.Context) error
}

func (s *suite) testInvalidArgument(t *testing.T) {
	km := s.p.KeyManagerClient()
	tests := []invalidCase{
		{"GenerateKey/unspecified key type", func(ctx context.Context) error {
			_, err := s.p.GenerateKey(ctx, "conformance-invalid", engine.KeyTypeUnspecified)
			return err
		}},
		{"GenerateKey/unknown key type", func(ctx context.Context) error {
			_, err := km.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: "conformance-invalid", KeyType: keymanagerv1.KeyType(42)})
			return err
		}},
		{"GenerateKey/empty key ID", func(ctx context.Context) error {
			_, err := s.p.GenerateKey(ctx, "", s.caps.KeyTypes[0])
			return err
		}},
	}
	for _, kt := range s.caps.KeyTypes {
		tests = append(tests, s.invalidSignCases(kt)...)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(callCtx(t)); status.Code(err) != codes.InvalidArgument {
				t.Errorf("got %v, want InvalidArgument", err)
			}
		})
	}
	// A refused request must not have created a key.
	if _, err := s.p.GetPublicKey(callCtx(t), "conformance-invalid"); status.Code(err) != codes.NotFound {
		t.Errorf("GetPublicKey(conformance-invalid) after refused GenerateKeys = %v, want NotFound", err)
	}
}

// invalidSignCases returns the SignData requests on a key of type kt that
// must be refused.
func (s *suite) invalidSignCases(kt engine.KeyType) []invalidCase {
	id := s.keys[kt].pk.ID
	h := s.caps.defaultOpts(kt)
	good, _ := digest(h.HashFunc())
	sign := func(name string, d []byte, opts crypto.SignerOpts) invalidCase {
		return invalidCase{fmt.Sprintf("SignData/%v/%s", kt, name), func(ctx context.Context) error {
			_, _, err := s.p.SignData(ctx, id, d, opts)
			return err
		}}
	}
	cases := []invalidCase{
		sign("digest too short", good[:len(good)-1], h),
		sign("digest too long", append(bytes.Clone(good), 0), h),
		sign("empty digest", nil, h),
		sign("unspecified hash", good, crypto.Hash(0)),
		sign("SHA-1 (not in the protocol)", good[:20], crypto.SHA1),
		sign("MD5 (not in the protocol)", good[:16], crypto.MD5),
		sign("no signer options", good, nil),
	}
	for _, rh := range s.caps.Refused[kt] {
		d, _ := digest(rh)
		cases = append(cases, sign("refused hash "+hashName(rh), d, rh))
	}
	if kt.IsEC() {
		return append(cases, sign("PSS on an EC key", good, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h.HashFunc()}))
	}
	if ph := s.caps.PSS[kt]; len(ph) > 0 {
		d, _ := digest(ph[0])
		for _, salt := range []int{1, ph[0].Size() - 1, ph[0].Size() + 1, -2} {
			cases = append(cases, sign(fmt.Sprintf("PSS %s salt %d", hashName(ph[0]), salt), d, &rsa.PSSOptions{SaltLength: salt, Hash: ph[0]}))
		}
	}
	return cases
}

// signCase is one signature the backend must produce.
type signCase struct {
	name string
	kt   engine.KeyType
	opts crypto.SignerOpts
}

// signCases lists every signature a backend with caps must produce: each
// key type with each of its hashes, and each RSA type with PSS for each of
// its PSS hashes and the salt lengths SPIRE sends ("equals hash", "auto",
// the hash length).
func signCases(caps Capabilities) []signCase {
	var cases []signCase
	for _, kt := range caps.KeyTypes {
		for _, h := range caps.Hashes[kt] {
			cases = append(cases, signCase{fmt.Sprintf("%v/%s", kt, hashName(h)), kt, h})
		}
		for _, h := range caps.PSS[kt] {
			for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, h.Size()} {
				cases = append(cases, signCase{fmt.Sprintf("%v/PSS-%s/salt=%d", kt, hashName(h), salt), kt, &rsa.PSSOptions{SaltLength: salt, Hash: h}})
			}
		}
	}
	return cases
}

func (s *suite) testSignData(t *testing.T) {
	for _, tc := range signCases(s.caps) {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.signAndVerify(callCtx(t), s.keys[tc.kt], tc.opts); err != nil {
				t.Error(err)
			}
		})
	}
}

// signAndVerify signs a fresh digest with k and checks the signature with
// the standard library and the fingerprint against k's.
func (s *suite) signAndVerify(ctx context.Context, k *key, opts crypto.SignerOpts) error {
	d, err := digest(opts.HashFunc())
	if err != nil {
		return err
	}
	sig, fp, err := s.p.SignData(ctx, k.pk.ID, d, opts)
	if err != nil {
		return fmt.Errorf("SignData(%s, %v): %w", k.pk.ID, optsName(opts), err)
	}
	if fp != k.pk.Fingerprint {
		return fmt.Errorf("SignData(%s, %v) fingerprint = %s, want %s", k.pk.ID, optsName(opts), fp, k.pk.Fingerprint)
	}
	if err := verify(k.pub, d, sig, opts); err != nil {
		return fmt.Errorf("SignData(%s, %v): %w", k.pk.ID, optsName(opts), err)
	}
	return nil
}

func (s *suite) testReplace(t *testing.T) {
	for _, kt := range s.caps.KeyTypes {
		t.Run(kt.String(), func(t *testing.T) {
			old := s.keys[kt]
			h := s.caps.defaultOpts(kt)
			d, err := digest(h.HashFunc())
			if err != nil {
				t.Fatal(err)
			}
			oldSig, _, err := s.p.SignData(callCtx(t), old.pk.ID, d, h)
			if err != nil {
				t.Fatalf("SignData before replace: %v", err)
			}

			pk, err := s.p.GenerateKey(callCtx(t), old.pk.ID, kt)
			if err != nil {
				t.Fatalf("GenerateKey(%s) replacing: %v", old.pk.ID, err)
			}
			pub, err := checkPublicKey(pk, old.pk.ID, kt)
			if err != nil {
				t.Fatal(err)
			}
			if pk.Fingerprint == old.pk.Fingerprint {
				t.Fatalf("replaced %s keeps fingerprint %s", old.pk.ID, pk.Fingerprint)
			}
			nk := &key{t: kt, pk: pk, pub: pub}
			s.keys[kt] = nk

			got, err := s.p.GetPublicKey(callCtx(t), pk.ID)
			if err != nil || !equalKeys(got, pk) {
				t.Errorf("GetPublicKey(%s) after replace = %s, %v; want %s", pk.ID, got.Fingerprint, err, pk.Fingerprint)
			}
			newSig, fp, err := s.p.SignData(callCtx(t), pk.ID, d, h)
			if err != nil {
				t.Fatalf("SignData after replace: %v", err)
			}
			if fp != pk.Fingerprint {
				t.Errorf("SignData after replace fingerprint = %s, want the new %s", fp, pk.Fingerprint)
			}
			if err := verify(pub, d, newSig, h); err != nil {
				t.Errorf("new signature does not verify with the new key: %v", err)
			}
			if verify(pub, d, oldSig, h) == nil {
				t.Error("a signature of the replaced key verifies with the new key")
			}
			if verify(old.pub, d, newSig, h) == nil {
				t.Error("a signature of the new key verifies with the replaced key")
			}
		})
	}
	t.Run("GetPublicKeys", s.testGetPublicKeys)
}

// testConcurrentSignData signs from many goroutines on every key while a
// GenerateKey on another ID runs: no signature may fail, and each must
// verify and carry its key's fingerprint.
func (s *suite) testConcurrentSignData(t *testing.T) {
	const (
		workers      = 8
		minPerWorker = 10
	)
	genType := s.caps.KeyTypes[0]
	for _, kt := range s.caps.KeyTypes {
		if kt == engine.RSA2048 {
			genType = kt // slow enough to overlap with the signers
		}
	}
	ctx := callCtx(t)
	genDone := make(chan struct{})
	var genErr error
	var genKey engine.PublicKey
	go func() {
		defer close(genDone)
		genKey, genErr = s.p.GenerateKey(ctx, "conformance-concurrent", genType)
	}()

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var mu sync.Mutex
	signed := 0
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				if i >= minPerWorker {
					select {
					case <-genDone:
						return
					default:
					}
				}
				kt := s.caps.KeyTypes[(w+i)%len(s.caps.KeyTypes)]
				opts := s.caps.defaultOpts(kt)
				if err := s.signAndVerify(ctx, s.keys[kt], opts); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				signed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-genDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if genErr != nil {
		t.Fatalf("GenerateKey(conformance-concurrent) while signing: %v", genErr)
	}
	if _, err := checkPublicKey(genKey, "conformance-concurrent", genType); err != nil {
		t.Error(err)
	}
	t.Logf("%d signatures verified while GenerateKey(%v) ran", signed, genType)
}

func equalKeys(a, b engine.PublicKey) bool {
	return a.ID == b.ID && a.Type == b.Type && a.Fingerprint == b.Fingerprint && bytes.Equal(a.PKIX, b.PKIX)
}

func optsName(opts crypto.SignerOpts) string {
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		return fmt.Sprintf("PSS %v salt %d", pss.Hash, pss.SaltLength)
	}
	if opts == nil {
		return "no options"
	}
	return opts.HashFunc().String()
}

// hashName names a hash in a subtest name: SHA-512/224 would otherwise
// nest a subtest.
func hashName(h crypto.Hash) string { return strings.ReplaceAll(h.String(), "/", "_") }
