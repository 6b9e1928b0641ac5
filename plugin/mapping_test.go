package plugin

import (
	"crypto"
	"crypto/rsa"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
)

func TestKeyTypeFromProto(t *testing.T) {
	tests := []struct {
		in      keymanagerv1.KeyType
		want    engine.KeyType
		wantErr codes.Code
	}{
		{keymanagerv1.KeyType_EC_P256, engine.ECP256, codes.OK},
		{keymanagerv1.KeyType_EC_P384, engine.ECP384, codes.OK},
		{keymanagerv1.KeyType_RSA_2048, engine.RSA2048, codes.OK},
		{keymanagerv1.KeyType_RSA_4096, engine.RSA4096, codes.OK},
		{keymanagerv1.KeyType_UNSPECIFIED_KEY_TYPE, engine.KeyTypeUnspecified, codes.InvalidArgument},
		{keymanagerv1.KeyType(5), engine.KeyTypeUnspecified, codes.InvalidArgument},
		{keymanagerv1.KeyType(-1), engine.KeyTypeUnspecified, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.in.String(), func(t *testing.T) {
			got, err := keyTypeFromProto(tt.in)
			if status.Code(err) != tt.wantErr {
				t.Fatalf("keyTypeFromProto(%v) error = %v, want code %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("keyTypeFromProto(%v) = %v, want %v", tt.in, got, tt.want)
			}
			if err == nil {
				if back := keyTypeToProto(got); back != tt.in {
					t.Errorf("keyTypeToProto(%v) = %v, want %v", got, back, tt.in)
				}
			}
		})
	}
}

func TestKeyTypeToProtoCoversEngineTypes(t *testing.T) {
	for _, kt := range engine.KeyTypes {
		p := keyTypeToProto(kt)
		if p == keymanagerv1.KeyType_UNSPECIFIED_KEY_TYPE {
			t.Errorf("keyTypeToProto(%v) is unspecified", kt)
		}
		if p.String() != kt.String() {
			t.Errorf("keyTypeToProto(%v) = %v: names differ", kt, p)
		}
	}
	if p := keyTypeToProto(engine.KeyType(99)); p != keymanagerv1.KeyType_UNSPECIFIED_KEY_TYPE {
		t.Errorf("keyTypeToProto(99) = %v, want unspecified", p)
	}
}

func TestHashFromProto(t *testing.T) {
	tests := []struct {
		in      keymanagerv1.HashAlgorithm
		want    crypto.Hash
		wantErr codes.Code
	}{
		{keymanagerv1.HashAlgorithm_SHA224, crypto.SHA224, codes.OK},
		{keymanagerv1.HashAlgorithm_SHA256, crypto.SHA256, codes.OK},
		{keymanagerv1.HashAlgorithm_SHA384, crypto.SHA384, codes.OK},
		{keymanagerv1.HashAlgorithm_SHA512, crypto.SHA512, codes.OK},
		{keymanagerv1.HashAlgorithm_SHA3_224, crypto.SHA3_224, codes.OK},
		{keymanagerv1.HashAlgorithm_SHA3_256, crypto.SHA3_256, codes.OK},
		{keymanagerv1.HashAlgorithm_SHA3_384, crypto.SHA3_384, codes.OK},
		{keymanagerv1.HashAlgorithm_SHA3_512, crypto.SHA3_512, codes.OK},
		{keymanagerv1.HashAlgorithm_SHA512_224, crypto.SHA512_224, codes.OK},
		{keymanagerv1.HashAlgorithm_SHA512_256, crypto.SHA512_256, codes.OK},
		{keymanagerv1.HashAlgorithm_UNSPECIFIED_HASH_ALGORITHM, 0, codes.InvalidArgument},
		{keymanagerv1.HashAlgorithm(crypto.MD5), 0, codes.InvalidArgument},
		{keymanagerv1.HashAlgorithm(crypto.SHA1), 0, codes.InvalidArgument},
		{keymanagerv1.HashAlgorithm(crypto.MD5SHA1), 0, codes.InvalidArgument},
		{keymanagerv1.HashAlgorithm(crypto.BLAKE2b_512), 0, codes.InvalidArgument},
		{keymanagerv1.HashAlgorithm(99), 0, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.in.String(), func(t *testing.T) {
			got, err := hashFromProto(tt.in)
			if status.Code(err) != tt.wantErr {
				t.Fatalf("hashFromProto(%v) error = %v, want code %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("hashFromProto(%v) = %v, want %v", tt.in, got, tt.want)
			}
			// The protocol's values are Go's constants.
			if err == nil && int32(got) != int32(tt.in) {
				t.Errorf("hashFromProto(%v) = %d, want the same number", tt.in, got)
			}
		})
	}
}

func TestSignerOptsFromProto(t *testing.T) {
	pss := func(salt int32, h keymanagerv1.HashAlgorithm) *keymanagerv1.SignDataRequest {
		return &keymanagerv1.SignDataRequest{SignerOpts: &keymanagerv1.SignDataRequest_PssOptions{
			PssOptions: &keymanagerv1.SignDataRequest_PSSOptions{SaltLength: salt, HashAlgorithm: h},
		}}
	}
	hash := func(h keymanagerv1.HashAlgorithm) *keymanagerv1.SignDataRequest {
		return &keymanagerv1.SignDataRequest{SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: h}}
	}
	tests := []struct {
		name     string
		req      *keymanagerv1.SignDataRequest
		wantHash crypto.Hash
		wantPSS  bool
		wantSalt int
		wantErr  codes.Code
	}{
		{name: "hash SHA256", req: hash(keymanagerv1.HashAlgorithm_SHA256), wantHash: crypto.SHA256},
		{name: "hash SHA3_512", req: hash(keymanagerv1.HashAlgorithm_SHA3_512), wantHash: crypto.SHA3_512},
		{name: "hash unspecified", req: hash(keymanagerv1.HashAlgorithm_UNSPECIFIED_HASH_ALGORITHM), wantErr: codes.InvalidArgument},
		{name: "hash SHA1", req: hash(keymanagerv1.HashAlgorithm(crypto.SHA1)), wantErr: codes.InvalidArgument},
		{name: "PSS equals hash", req: pss(-1, keymanagerv1.HashAlgorithm_SHA256), wantHash: crypto.SHA256, wantPSS: true, wantSalt: rsa.PSSSaltLengthEqualsHash},
		{name: "PSS auto", req: pss(0, keymanagerv1.HashAlgorithm_SHA384), wantHash: crypto.SHA384, wantPSS: true, wantSalt: rsa.PSSSaltLengthAuto},
		{name: "PSS 64", req: pss(64, keymanagerv1.HashAlgorithm_SHA512), wantHash: crypto.SHA512, wantPSS: true, wantSalt: 64},
		{name: "PSS odd salt passed through", req: pss(7, keymanagerv1.HashAlgorithm_SHA256), wantHash: crypto.SHA256, wantPSS: true, wantSalt: 7},
		{name: "PSS unspecified hash", req: pss(-1, keymanagerv1.HashAlgorithm_UNSPECIFIED_HASH_ALGORITHM), wantErr: codes.InvalidArgument},
		{name: "PSS nil options", req: &keymanagerv1.SignDataRequest{SignerOpts: &keymanagerv1.SignDataRequest_PssOptions{}}, wantErr: codes.InvalidArgument},
		{name: "no options", req: &keymanagerv1.SignDataRequest{}, wantErr: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signerOptsFromProto(tt.req)
			if status.Code(err) != tt.wantErr {
				t.Fatalf("signerOptsFromProto() error = %v, want code %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.HashFunc() != tt.wantHash {
				t.Errorf("HashFunc() = %v, want %v", got.HashFunc(), tt.wantHash)
			}
			p, isPSS := got.(*rsa.PSSOptions)
			if isPSS != tt.wantPSS {
				t.Fatalf("got %T, want PSS %v", got, tt.wantPSS)
			}
			if isPSS && p.SaltLength != tt.wantSalt {
				t.Errorf("SaltLength = %d, want %d", p.SaltLength, tt.wantSalt)
			}
		})
	}
}

func TestPublicKeyToProto(t *testing.T) {
	in := engine.PublicKey{ID: "x509-CA-A", Type: engine.RSA4096, PKIX: []byte{1, 2, 3}, Fingerprint: "ab"}
	got := publicKeyToProto(in)
	if got.GetId() != in.ID || got.GetType() != keymanagerv1.KeyType_RSA_4096 || string(got.GetPkixData()) != string(in.PKIX) || got.GetFingerprint() != in.Fingerprint {
		t.Errorf("publicKeyToProto(%+v) = %v", in, got)
	}
}
