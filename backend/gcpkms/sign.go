package gcpkms

import (
	"context"
	"crypto"
	"fmt"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Sign signs digest with a version of this server's key. The request must
// match the one algorithm the version signs with (InvalidArgument naming it
// otherwise). The CRC32C round trip is checked end to end: digest_crc32c is
// sent, and verified_digest_crc32c, signature_crc32c and name are checked on
// the answer; a failing answer is asked again a bounded number of times.
func (b *Backend) Sign(ctx context.Context, g engine.Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	defer b.calls.start()()
	alg, err := b.algorithmOf(ctx, g)
	if err != nil {
		return nil, err
	}
	if err := alg.accepts(opts); err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "key %s (%s) cannot sign this request: %w", g.KeyID, g.Ref, err)
	}
	d, ok := digestFor(alg.hash, digest)
	if !ok {
		return nil, engine.Errorf(codes.InvalidArgument, "key %s (%s): Cloud KMS takes no %v digest", g.KeyID, g.Ref, alg.hash)
	}
	req := &kmspb.AsymmetricSignRequest{Name: g.Ref, Digest: d, DigestCrc32C: wrapperspb.Int64(crc32c(digest))}
	var failed string
	for attempt := 1; attempt <= maxIntegrityAttempts; attempt++ {
		resp, err := b.client.AsymmetricSign(ctx, req, b.callOptions(ctx, "AsymmetricSign", idempotent)...)
		if err != nil {
			return nil, cloudError(err, "AsymmetricSign", g.Ref)
		}
		if failed = checkSignResponse(g.Ref, resp); failed == "" {
			return resp.GetSignature(), nil
		}
		b.log.Warn("Cloud KMS signature failed an integrity check; signing again", "key_id", g.KeyID, "version", g.Ref, "check", failed, "attempt", attempt)
		b.metrics.IncrCounter([]string{"kmskeeper", "gcpkms", "integrity_failures"}, 1, engine.Label{Name: "method", Value: "AsymmetricSign"})
	}
	return nil, engine.Errorf(codes.Internal, "Cloud KMS AsymmetricSign on %s: the response failed the %s integrity check %d times in a row (corrupted in transit)", g.Ref, failed, maxIntegrityAttempts)
}

// checkSignResponse returns the name of the first integrity check the
// response fails, or "".
func checkSignResponse(version string, resp *kmspb.AsymmetricSignResponse) string {
	switch {
	case !resp.GetVerifiedDigestCrc32C():
		return "verified_digest_crc32c (Cloud KMS did not confirm receiving the digest intact)"
	case resp.GetName() != version:
		return fmt.Sprintf("name (the signature is from %q)", resp.GetName())
	case resp.GetSignatureCrc32C() == nil || resp.GetSignatureCrc32C().GetValue() != crc32c(resp.GetSignature()):
		return "signature_crc32c"
	}
	return ""
}

// algorithmOf returns the algorithm of a generation: the one Fetch or
// Create recorded, else (a generation from an older engine state) the
// version's, read from Cloud KMS.
func (b *Backend) algorithmOf(ctx context.Context, g engine.Generation) (algorithm, error) {
	if a, ok := lookupAlgorithmName(g.Algorithm); ok {
		return a, nil
	}
	v, err := b.client.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: g.Ref}, b.callOptions(ctx, "GetCryptoKeyVersion", idempotent)...)
	if err != nil {
		return algorithm{}, cloudError(err, "GetCryptoKeyVersion", g.Ref)
	}
	a, ok := lookupAlgorithm(v.GetAlgorithm())
	if !ok {
		return algorithm{}, engine.Errorf(codes.FailedPrecondition, "%s has algorithm %s, which is not a SPIRE key type (EC P-256/P-384, RSA 2048/4096 signing); it cannot be served: delete it or use another key ID", g.Ref, v.GetAlgorithm())
	}
	return a, nil
}
