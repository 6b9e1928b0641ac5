package gcpkms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kmskeeper/kmskeeper/engine"
)

// fakeCloud is a scripted cloudClient for the backend's fast tests: it keeps
// CryptoKeys, their labels and version counts in memory, signs with one
// P-256 key, and answers a method with the errors scripted for it (in
// order) before answering normally. Every call goes through gax.Invoke with
// the call's options, as the generated client's do, so the backend's
// retryer decides what is tried again.
type fakeCloud struct {
	key *ecdsa.PrivateKey

	mu       sync.Mutex
	keys     map[string]*kmspb.CryptoKey
	versions map[string]int // key name: versions made
	policies map[string]*iampb.Policy
	script   map[string][]error
	calls    map[string]int
}

func newFakeCloud(t *testing.T) *fakeCloud {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeCloud{key: k, keys: map[string]*kmspb.CryptoKey{}, versions: map[string]int{},
		policies: map[string]*iampb.Policy{}, script: map[string][]error{}, calls: map[string]int{}}
}

// fail scripts errs as the next answers of method.
func (f *fakeCloud) fail(method string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[method] = append(f.script[method], errs...)
}

// count returns how many times method was tried.
func (f *fakeCloud) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// invoke runs one call of method under opts: each try first takes the next
// scripted error, if any, else answers with answer (under f.mu).
func (f *fakeCloud) invoke(ctx context.Context, method string, opts []gax.CallOption, answer func() error) error {
	return gax.Invoke(ctx, func(ctx context.Context, _ gax.CallSettings) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls[method]++
		if s := f.script[method]; len(s) > 0 {
			f.script[method] = s[1:]
			return s[0]
		}
		return answer()
	}, opts...)
}

func (f *fakeCloud) GetCryptoKey(ctx context.Context, req *kmspb.GetCryptoKeyRequest, opts ...gax.CallOption) (*kmspb.CryptoKey, error) {
	var out *kmspb.CryptoKey
	err := f.invoke(ctx, "GetCryptoKey", opts, func() error {
		k, ok := f.keys[req.GetName()]
		if !ok {
			return status.Errorf(codes.NotFound, "CryptoKey %s not found.", req.GetName())
		}
		out = proto.Clone(k).(*kmspb.CryptoKey)
		return nil
	})
	return out, err
}

func (f *fakeCloud) CreateCryptoKey(ctx context.Context, req *kmspb.CreateCryptoKeyRequest, opts ...gax.CallOption) (*kmspb.CryptoKey, error) {
	var out *kmspb.CryptoKey
	err := f.invoke(ctx, "CreateCryptoKey", opts, func() error {
		name := req.GetParent() + "/cryptoKeys/" + req.GetCryptoKeyId()
		if _, ok := f.keys[name]; ok {
			return status.Errorf(codes.AlreadyExists, "CryptoKey %s already exists.", name)
		}
		k := proto.Clone(req.GetCryptoKey()).(*kmspb.CryptoKey)
		k.Name, k.CreateTime = name, timestamppb.Now()
		f.keys[name], f.versions[name] = k, 1
		out = proto.Clone(k).(*kmspb.CryptoKey)
		return nil
	})
	return out, err
}

func (f *fakeCloud) UpdateCryptoKey(ctx context.Context, req *kmspb.UpdateCryptoKeyRequest, opts ...gax.CallOption) (*kmspb.CryptoKey, error) {
	var out *kmspb.CryptoKey
	err := f.invoke(ctx, "UpdateCryptoKey", opts, func() error {
		k, ok := f.keys[req.GetCryptoKey().GetName()]
		if !ok {
			return status.Errorf(codes.NotFound, "CryptoKey %s not found.", req.GetCryptoKey().GetName())
		}
		for _, p := range req.GetUpdateMask().GetPaths() {
			switch p {
			case "labels":
				k.Labels = req.GetCryptoKey().GetLabels()
			case "version_template.algorithm":
				k.VersionTemplate.Algorithm = req.GetCryptoKey().GetVersionTemplate().GetAlgorithm()
			}
		}
		out = proto.Clone(k).(*kmspb.CryptoKey)
		return nil
	})
	return out, err
}

func (f *fakeCloud) ListCryptoKeys(ctx context.Context, req *kmspb.ListCryptoKeysRequest, opts ...gax.CallOption) keyIterator {
	var keys []*kmspb.CryptoKey
	err := f.invoke(ctx, "ListCryptoKeys", opts, func() error {
		for _, k := range f.keys {
			keys = append(keys, proto.Clone(k).(*kmspb.CryptoKey))
		}
		return nil
	})
	return &sliceIterator[*kmspb.CryptoKey]{items: keys, err: err}
}

func (f *fakeCloud) GetCryptoKeyVersion(ctx context.Context, req *kmspb.GetCryptoKeyVersionRequest, opts ...gax.CallOption) (*kmspb.CryptoKeyVersion, error) {
	var out *kmspb.CryptoKeyVersion
	err := f.invoke(ctx, "GetCryptoKeyVersion", opts, func() error {
		out = &kmspb.CryptoKeyVersion{Name: req.GetName(), State: kmspb.CryptoKeyVersion_ENABLED, Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256}
		return nil
	})
	return out, err
}

func (f *fakeCloud) CreateCryptoKeyVersion(ctx context.Context, req *kmspb.CreateCryptoKeyVersionRequest, opts ...gax.CallOption) (*kmspb.CryptoKeyVersion, error) {
	var out *kmspb.CryptoKeyVersion
	err := f.invoke(ctx, "CreateCryptoKeyVersion", opts, func() error {
		if _, ok := f.keys[req.GetParent()]; !ok {
			return status.Errorf(codes.NotFound, "CryptoKey %s not found.", req.GetParent())
		}
		f.versions[req.GetParent()]++
		out = &kmspb.CryptoKeyVersion{Name: fmt.Sprintf("%s/cryptoKeyVersions/%d", req.GetParent(), f.versions[req.GetParent()]), CreateTime: timestamppb.Now()}
		return nil
	})
	return out, err
}

func (f *fakeCloud) DestroyCryptoKeyVersion(ctx context.Context, req *kmspb.DestroyCryptoKeyVersionRequest, opts ...gax.CallOption) (*kmspb.CryptoKeyVersion, error) {
	var out *kmspb.CryptoKeyVersion
	err := f.invoke(ctx, "DestroyCryptoKeyVersion", opts, func() error {
		out = &kmspb.CryptoKeyVersion{Name: req.GetName(), State: kmspb.CryptoKeyVersion_DESTROY_SCHEDULED}
		return nil
	})
	return out, err
}

func (f *fakeCloud) ListCryptoKeyVersions(ctx context.Context, req *kmspb.ListCryptoKeyVersionsRequest, opts ...gax.CallOption) versionIterator {
	var versions []*kmspb.CryptoKeyVersion
	err := f.invoke(ctx, "ListCryptoKeyVersions", opts, func() error {
		for n := 1; n <= f.versions[req.GetParent()]; n++ {
			versions = append(versions, &kmspb.CryptoKeyVersion{Name: fmt.Sprintf("%s/cryptoKeyVersions/%d", req.GetParent(), n),
				State: kmspb.CryptoKeyVersion_ENABLED, Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, CreateTime: timestamppb.Now()})
		}
		return nil
	})
	return &sliceIterator[*kmspb.CryptoKeyVersion]{items: versions, err: err}
}

func (f *fakeCloud) GetPublicKey(ctx context.Context, req *kmspb.GetPublicKeyRequest, opts ...gax.CallOption) (*kmspb.PublicKey, error) {
	var out *kmspb.PublicKey
	err := f.invoke(ctx, "GetPublicKey", opts, func() error {
		der, err := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		p := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		out = &kmspb.PublicKey{Name: req.GetName(), Pem: p, PemCrc32C: wrapperspb.Int64(crc32c([]byte(p))), Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256}
		return nil
	})
	return out, err
}

func (f *fakeCloud) AsymmetricSign(ctx context.Context, req *kmspb.AsymmetricSignRequest, opts ...gax.CallOption) (*kmspb.AsymmetricSignResponse, error) {
	var out *kmspb.AsymmetricSignResponse
	err := f.invoke(ctx, "AsymmetricSign", opts, func() error {
		sig, err := f.key.Sign(rand.Reader, req.GetDigest().GetSha256(), crypto.SHA256)
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		out = &kmspb.AsymmetricSignResponse{Name: req.GetName(), Signature: sig, SignatureCrc32C: wrapperspb.Int64(crc32c(sig)), VerifiedDigestCrc32C: true}
		return nil
	})
	return out, err
}

func (f *fakeCloud) SetIamPolicy(ctx context.Context, req *iampb.SetIamPolicyRequest, opts ...gax.CallOption) (*iampb.Policy, error) {
	var out *iampb.Policy
	err := f.invoke(ctx, "SetIamPolicy", opts, func() error {
		f.policies[req.GetResource()] = req.GetPolicy()
		out = req.GetPolicy()
		return nil
	})
	return out, err
}

func (f *fakeCloud) Close() error { return nil }

// policy returns the policy set on resource, if any.
func (f *fakeCloud) policy(resource string) *iampb.Policy {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.policies[resource]
}

// sliceIterator iterates over a listing the fake answered in one page.
type sliceIterator[T any] struct {
	items []T
	err   error
}

func (it *sliceIterator[T]) Next() (T, error) {
	var zero T
	if it.err != nil {
		return zero, it.err
	}
	if len(it.items) == 0 {
		return zero, iterator.Done
	}
	v := it.items[0]
	it.items = it.items[1:]
	return v, nil
}

// fakeBackend returns a backend of server-a over a new fake, with retry
// pauses of a few milliseconds; mod adjusts its options.
func fakeBackend(t *testing.T, mod ...func(*Options)) (*Backend, *fakeCloud) {
	t.Helper()
	f := newFakeCloud(t)
	opts := Options{KeyRing: testRing, TrustDomain: testTrustDomain, ServerID: "server-a", WriteInterval: time.Millisecond}
	for _, m := range mod {
		m(&opts)
	}
	b, err := newWithClient(opts, f)
	if err != nil {
		t.Fatal(err)
	}
	fastRetries(b)
	return b, f
}

// fakeKey is the CryptoKey name of key ID id of server-a.
func fakeKey(id string) string { return testRing + "/cryptoKeys/spire-key-server-a-" + id }

// committed returns g with its creator's lease committed, as the engine's
// commit records it.
func committed(t *testing.T, b *Backend, g engine.Generation) engine.Generation {
	t.Helper()
	l := testLease()
	l.Pending, l.Ref = false, g.Ref
	g.Leases = []engine.Lease{l}
	g, err := b.KeepAlive(context.Background(), g)
	if err != nil {
		t.Fatalf("committing %s: %v", g.Ref, err)
	}
	return g
}

// containsAll reports whether s contains every fragment.
func containsAll(s string, fragments ...string) bool {
	for _, f := range fragments {
		if !strings.Contains(s, f) {
			return false
		}
	}
	return true
}
