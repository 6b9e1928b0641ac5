package gcpkms

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"hash/crc32"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// maxIntegrityAttempts bounds how often a response that fails a CRC32C or
// name check is asked for again before giving up.
const maxIntegrityAttempts = 3

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the checksum Cloud KMS uses for end-to-end integrity.
func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

// Fetch fetches the public key of one of this server's versions, waiting
// while it is PENDING_GENERATION.
func (b *Backend) Fetch(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	defer b.calls.start()()
	if !isVersionName(g.Ref) {
		return g, engine.Errorf(codes.Internal, "key %s: %s is another server's CryptoKey, not a version; only this server's versions are fetched", g.KeyID, g.Ref)
	}
	pub, alg, err := b.publicKey(ctx, g.Ref)
	if err != nil {
		return g, err
	}
	g.Public, g.Type, g.Algorithm = pub, alg.keyType, alg.kms.String()
	return g, nil
}

// publicKey gets and checks a version's public key: pem_crc32c and name are
// verified (a mismatch is asked again a few times), the algorithm must be
// one SPIRE can use, and the key must be of the type it names.
func (b *Backend) publicKey(ctx context.Context, version string) (crypto.PublicKey, algorithm, error) {
	var failed string
	for attempt := 1; attempt <= maxIntegrityAttempts; attempt++ {
		resp, err := b.client.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: version},
			b.callOptions(ctx, "GetPublicKey", awaitingKey)...)
		if err != nil {
			return nil, algorithm{}, cloudError(err, "GetPublicKey", version)
		}
		switch {
		case resp.GetName() != version:
			failed = fmt.Sprintf("name (the response is for %q)", resp.GetName())
		case resp.GetPemCrc32C() == nil || resp.GetPemCrc32C().GetValue() != crc32c([]byte(resp.GetPem())):
			failed = "pem_crc32c"
		default:
			return parsePublicKey(version, resp)
		}
		b.log.Warn("Cloud KMS public key failed an integrity check; asking again", "version", version, "check", failed, "attempt", attempt)
		b.metrics.IncrCounter([]string{"kmskeeper", "gcpkms", "integrity_failures"}, 1, engine.Label{Name: "method", Value: "GetPublicKey"})
	}
	return nil, algorithm{}, engine.Errorf(codes.Internal, "Cloud KMS GetPublicKey on %s: the response failed the %s integrity check %d times in a row (corrupted in transit)", version, failed, maxIntegrityAttempts)
}

// parsePublicKey decodes a GetPublicKey response.
func parsePublicKey(version string, resp *kmspb.PublicKey) (crypto.PublicKey, algorithm, error) {
	alg, ok := lookupAlgorithm(resp.GetAlgorithm())
	if !ok {
		return nil, algorithm{}, engine.Errorf(codes.FailedPrecondition, "%s has algorithm %s, which is not a SPIRE key type (EC P-256/P-384, RSA 2048/4096 signing); it cannot be served: delete it or use another key ID", version, resp.GetAlgorithm())
	}
	block, _ := pem.Decode([]byte(resp.GetPem()))
	if block == nil {
		return nil, algorithm{}, engine.Errorf(codes.Internal, "Cloud KMS GetPublicKey on %s: the response holds no PEM block", version)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, algorithm{}, engine.Errorf(codes.Internal, "Cloud KMS GetPublicKey on %s: the public key cannot be parsed: %w", version, err)
	}
	if t, err := engine.KeyTypeOf(pub); err != nil || t != alg.keyType {
		return nil, algorithm{}, engine.Errorf(codes.Internal, "Cloud KMS GetPublicKey on %s: the public key does not match its algorithm %s", version, alg.kms)
	}
	return pub, alg, nil
}
