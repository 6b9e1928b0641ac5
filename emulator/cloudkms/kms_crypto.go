package cloudkms

import (
	"context"
	"crypto"
	_ "crypto/sha256" // crypto.SHA256.New for server-side hashing of data
	_ "crypto/sha512" // crypto.SHA384/SHA512.New

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// usableVersion looks up name and returns what signing needs, or the
// service's error when the version is missing or not ENABLED.
func (s *Server) usableVersion(name string) (*keyVersion, crypto.Signer, error) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	_, v, err := s.lookupVersionLocked(name)
	if err != nil {
		return nil, nil, err
	}
	if v.state != kmspb.CryptoKeyVersion_ENABLED {
		return nil, nil, notEnabled(v)
	}
	cp := *v
	return &cp, v.signer, nil
}

func (k *kmsService) GetPublicKey(ctx context.Context, req *kmspb.GetPublicKeyRequest) (*kmspb.PublicKey, error) {
	if _, _, err := parseVersionName(req.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeyVersions.viewPublicKey", req.GetName()); err != nil {
		return nil, err
	}
	switch req.GetPublicKeyFormat() {
	case kmspb.PublicKey_PUBLIC_KEY_FORMAT_UNSPECIFIED, kmspb.PublicKey_PEM, kmspb.PublicKey_DER:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "public_key_format %v is only supported for post-quantum algorithms.", req.GetPublicKeyFormat())
	}
	v, signer, err := k.s.usableVersion(req.GetName())
	if err != nil {
		return nil, err
	}
	pemStr, der, err := publicKeyPEM(signer)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	resp := &kmspb.PublicKey{
		Pem:             pemStr,
		PemCrc32C:       wrapperspb.Int64(crc32c([]byte(pemStr))),
		Algorithm:       v.algorithm,
		Name:            v.name,
		ProtectionLevel: v.protection,
	}
	switch req.GetPublicKeyFormat() {
	case kmspb.PublicKey_PEM:
		resp.PublicKeyFormat = kmspb.PublicKey_PEM
		resp.PublicKey = &kmspb.ChecksummedData{Data: []byte(pemStr), Crc32CChecksum: wrapperspb.Int64(crc32c([]byte(pemStr)))}
	case kmspb.PublicKey_DER:
		resp.PublicKeyFormat = kmspb.PublicKey_DER
		resp.PublicKey = &kmspb.ChecksummedData{Data: der, Crc32CChecksum: wrapperspb.Int64(crc32c(der))}
	}
	return resp, nil
}

func (k *kmsService) AsymmetricSign(ctx context.Context, req *kmspb.AsymmetricSignRequest) (*kmspb.AsymmetricSignResponse, error) {
	if _, _, err := parseVersionName(req.GetName()); err != nil {
		return nil, err
	}
	if err := k.s.authorize(ctx, "cloudkms.cryptoKeyVersions.useToSign", req.GetName()); err != nil {
		return nil, err
	}
	v, signer, err := k.s.usableVersion(req.GetName())
	if err != nil {
		return nil, err
	}
	alg := algorithms[v.algorithm]
	resp := &kmspb.AsymmetricSignResponse{Name: v.name, ProtectionLevel: v.protection}
	var input []byte
	switch {
	case req.GetDigest() != nil && len(req.GetData()) > 0:
		return nil, status.Error(codes.InvalidArgument, "Only one of digest and data may be set.")
	case req.GetDigest() != nil:
		if alg.kind == kindEd25519 {
			return nil, status.Errorf(codes.InvalidArgument, "Algorithm %v signs data, not a digest: set data instead of digest.", v.algorithm)
		}
		got, digest := digestOf(req.GetDigest())
		if got != alg.hash {
			return nil, status.Errorf(codes.InvalidArgument, "The digest type %s does not match the algorithm %v, which expects %s.", hashName(got), v.algorithm, hashName(alg.hash))
		}
		if len(digest) != alg.hash.Size() {
			return nil, status.Errorf(codes.InvalidArgument, "The %s digest must be %d bytes long, got %d.", hashName(alg.hash), alg.hash.Size(), len(digest))
		}
		if c := req.GetDigestCrc32C(); c != nil {
			if c.GetValue() != crc32c(digest) {
				return nil, status.Error(codes.InvalidArgument, "The checksum in field digest_crc32c did not match the data in field digest.")
			}
			resp.VerifiedDigestCrc32C = true
		}
		input = digest
	case len(req.GetData()) > 0:
		data := req.GetData()
		if c := req.GetDataCrc32C(); c != nil {
			if c.GetValue() != crc32c(data) {
				return nil, status.Error(codes.InvalidArgument, "The checksum in field data_crc32c did not match the data in field data.")
			}
			resp.VerifiedDataCrc32C = true
		}
		input = data
		if alg.hash != 0 {
			// Digest algorithms hash the data on the server side.
			h := alg.hash.New()
			h.Write(data)
			input = h.Sum(nil)
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "One of digest or data must be set.")
	}
	sig, err := sign(v.algorithm, signer, input)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "sign: %v", err)
	}
	resp.Signature = sig
	resp.SignatureCrc32C = wrapperspb.Int64(crc32c(sig))
	return resp, nil
}

// digestOf returns which hash the request's digest oneof names and its bytes.
func digestOf(d *kmspb.Digest) (crypto.Hash, []byte) {
	switch x := d.GetDigest().(type) {
	case *kmspb.Digest_Sha256:
		return crypto.SHA256, x.Sha256
	case *kmspb.Digest_Sha384:
		return crypto.SHA384, x.Sha384
	case *kmspb.Digest_Sha512:
		return crypto.SHA512, x.Sha512
	}
	return 0, nil
}

func hashName(h crypto.Hash) string {
	switch h {
	case crypto.SHA256:
		return "SHA256"
	case crypto.SHA384:
		return "SHA384"
	case crypto.SHA512:
		return "SHA512"
	}
	return "none"
}
