package engine

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
)

// signHashes are the hashes SPIRE's protocol can name.
var signHashes = map[crypto.Hash]bool{
	crypto.SHA224: true, crypto.SHA256: true, crypto.SHA384: true, crypto.SHA512: true,
	crypto.SHA3_224: true, crypto.SHA3_256: true, crypto.SHA3_384: true, crypto.SHA3_512: true,
	crypto.SHA512_224: true, crypto.SHA512_256: true,
}

// normalizeOpts checks a signing request against the key type and returns
// the options the backend receives: a crypto.Hash, or *rsa.PSSOptions with the
// salt as long as the hash, which is what cloud KMSs produce. SPIRE sends PSS
// salt lengths "equals hash" (-1), "auto" (0) or the hash length; any other
// salt cannot be honoured.
func normalizeOpts(t KeyType, digest []byte, opts crypto.SignerOpts) (crypto.SignerOpts, error) {
	if opts == nil {
		return nil, Errorf(codes.InvalidArgument, "no hash algorithm given")
	}
	h := opts.HashFunc()
	if !signHashes[h] {
		return nil, Errorf(codes.InvalidArgument, "unsupported hash algorithm %v", h)
	}
	if len(digest) != h.Size() {
		return nil, Errorf(codes.InvalidArgument, "digest is %d bytes long; %v digests are %d", len(digest), h, h.Size())
	}
	pss, isPSS := opts.(*rsa.PSSOptions)
	if !isPSS {
		return h, nil
	}
	if t.IsEC() {
		return nil, Errorf(codes.InvalidArgument, "PSS was requested for an %v key; PSS applies to RSA keys only", t)
	}
	switch pss.SaltLength {
	case rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, h.Size():
	default:
		return nil, Errorf(codes.InvalidArgument, "PSS salt length %d is not supported: cloud KMSs sign with a salt as long as the hash (%d bytes); use %d, -1 (equals hash) or 0 (auto)", pss.SaltLength, h.Size(), h.Size())
	}
	return &rsa.PSSOptions{SaltLength: h.Size(), Hash: h}, nil
}

// Verify checks a signature made with opts (a crypto.Hash or
// *rsa.PSSOptions) over digest against pub. ECDSA signatures are ASN.1 DER.
// The engine runs it on every signature; operator probes use it too.
func Verify(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	return verify(pub, digest, sig, opts)
}

// verify checks a signature made with opts against pub.
func verify(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(k, pss.Hash, digest, sig, pss)
		}
		return rsa.VerifyPKCS1v15(k, opts.HashFunc(), digest, sig)
	}
	return fmt.Errorf("cannot verify with a %T", pub)
}
