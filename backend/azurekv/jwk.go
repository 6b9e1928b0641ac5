package azurekv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/kmskeeper/kmskeeper/engine"
)

// publicKey converts the public JWK a vault returns. EC-HSM and RSA-HSM
// (Premium vaults, Managed HSM) are the same keys as EC and RSA; the built-in
// plugin failed on them until SPIRE PR #6751.
func publicKey(jwk *azkeys.JSONWebKey) (crypto.PublicKey, engine.KeyType, error) {
	if jwk == nil || jwk.Kty == nil {
		return nil, 0, fmt.Errorf("the vault returned no key")
	}
	var pub crypto.PublicKey
	switch *jwk.Kty {
	case azkeys.KeyTypeEC, azkeys.KeyTypeECHSM:
		if jwk.Crv == nil {
			return nil, 0, fmt.Errorf("EC key without a curve")
		}
		var curve elliptic.Curve
		switch *jwk.Crv {
		case azkeys.CurveNameP256:
			curve = elliptic.P256()
		case azkeys.CurveNameP384:
			curve = elliptic.P384()
		default:
			return nil, 0, fmt.Errorf("EC curve %s is not one SPIRE uses (P-256, P-384)", *jwk.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(jwk.X) == 0 || len(jwk.Y) == 0 || len(jwk.X) > size || len(jwk.Y) > size {
			return nil, 0, fmt.Errorf("EC key with malformed coordinates (%d and %d bytes)", len(jwk.X), len(jwk.Y))
		}
		// Uncompressed point encoding, checked by ParseUncompressedPublicKey.
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1+size-len(jwk.X):1+size], jwk.X)
		copy(point[1+2*size-len(jwk.Y):], jwk.Y)
		k, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, 0, fmt.Errorf("EC key: %w", err)
		}
		pub = k
	case azkeys.KeyTypeRSA, azkeys.KeyTypeRSAHSM:
		if len(jwk.N) == 0 || len(jwk.E) == 0 || len(jwk.E) > 4 {
			return nil, 0, fmt.Errorf("RSA key with malformed modulus or exponent")
		}
		e := new(big.Int).SetBytes(jwk.E).Int64()
		n := new(big.Int).SetBytes(jwk.N)
		// Real keys use 65537; what is not an odd exponent of at least 3 with
		// an odd modulus cannot verify a signature.
		if e < 3 || e%2 == 0 || n.Bit(0) == 0 {
			return nil, 0, fmt.Errorf("RSA key with an invalid public exponent (%d) or an even modulus", e)
		}
		pub = &rsa.PublicKey{N: n, E: int(e)}
	default:
		return nil, 0, fmt.Errorf("key type %s is not one SPIRE uses (EC, RSA)", *jwk.Kty)
	}
	t, err := engine.KeyTypeOf(pub)
	if err != nil {
		return nil, 0, err
	}
	return pub, t, nil
}
