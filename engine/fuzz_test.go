package engine_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/engine"
)

// FuzzSignData sends SignData arbitrary key IDs, digests, hashes and PSS
// options on EC and RSA keys: it never panics; a request it refuses gets
// InvalidArgument or NotFound; a signature it returns carries the served
// key's fingerprint and verifies with its public key.
func FuzzSignData(f *testing.F) {
	f.Add("x509-CA-A", make([]byte, 32), uint8(crypto.SHA256), false, int32(0))
	f.Add("x509-CA-A", make([]byte, 48), uint8(crypto.SHA384), false, int32(0))
	f.Add("x509-CA-A", make([]byte, 31), uint8(crypto.SHA256), false, int32(0))
	f.Add("x509-CA-A", make([]byte, 32), uint8(crypto.SHA256), true, int32(-1))
	f.Add("JWT-Signer-A", make([]byte, 32), uint8(crypto.SHA256), true, int32(32))
	f.Add("JWT-Signer-A", make([]byte, 64), uint8(crypto.SHA512), true, int32(0))
	f.Add("JWT-Signer-A", make([]byte, 32), uint8(crypto.SHA256), true, int32(20))
	f.Add("JWT-Signer-A", make([]byte, 32), uint8(crypto.SHA3_256), false, int32(0))
	f.Add("JWT-Signer-A", make([]byte, 16), uint8(crypto.MD5), false, int32(0))
	f.Add("JWT-Signer-A", make([]byte, 0), uint8(0), false, int32(0))
	f.Add("unknown", make([]byte, 32), uint8(crypto.SHA256), false, int32(0))
	f.Add("", make([]byte, 32), uint8(crypto.SHA256), false, int32(0))
	f.Add("JWT-Signer-A", make([]byte, 32), uint8(200), true, int32(-2))

	m, err := engine.New(engine.Options{Backend: memory.NewStore().Backend("example.org", "fuzz"), ServerID: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	ctx := context.Background()
	served := map[string]crypto.PublicKey{}
	fps := map[string]string{}
	for id, t := range map[string]engine.KeyType{"x509-CA-A": engine.ECP256, "JWT-Signer-A": engine.RSA2048} {
		pk, err := m.GenerateKey(ctx, id, t)
		if err != nil {
			f.Fatal(err)
		}
		if served[id], err = x509.ParsePKIXPublicKey(pk.PKIX); err != nil {
			f.Fatal(err)
		}
		fps[id] = pk.Fingerprint
	}

	f.Fuzz(func(t *testing.T, id string, digest []byte, hash uint8, pss bool, salt int32) {
		var opts crypto.SignerOpts = crypto.Hash(hash)
		if pss {
			opts = &rsa.PSSOptions{SaltLength: int(salt), Hash: crypto.Hash(hash)}
		}
		if hash == 0 && !pss {
			opts = nil
		}
		sig, fp, err := m.SignData(ctx, id, digest, opts)
		if err != nil {
			if c := engine.Code(err); c != codes.InvalidArgument && c != codes.NotFound {
				t.Fatalf("SignData(%q, %d bytes, hash %d, pss %v, salt %d) = %v (code %v), want InvalidArgument or NotFound", id, len(digest), hash, pss, salt, err, c)
			}
			return
		}
		pub, ok := served[id]
		if !ok || fp != fps[id] {
			t.Fatalf("SignData(%q) signed with fingerprint %q; served: %v", id, fp, fps)
		}
		vopts := opts
		if pss {
			h := crypto.Hash(hash)
			vopts = &rsa.PSSOptions{SaltLength: h.Size(), Hash: h}
		}
		if err := engine.Verify(pub, digest, sig, vopts); err != nil {
			t.Fatalf("SignData(%q, hash %d, pss %v, salt %d) returned a signature that does not verify: %v", id, hash, pss, salt, err)
		}
	})
}
