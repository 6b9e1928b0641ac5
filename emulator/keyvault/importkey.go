package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"math/big"
	"net/http"
	"strings"
)

type importParams struct {
	Key        *jsonWebKey       `json:"key"`
	HSM        *bool             `json:"Hsm"`
	Attributes *inAttributes     `json:"attributes"`
	Tags       map[string]string `json:"tags"`
}

// privateFromJWK builds a private key from JWK members. Key Vault imports
// need the private key; RSA needs the primes as well.
func privateFromJWK(j *jsonWebKey) (crypto.Signer, *apiError) {
	dec := func(field, s string) ([]byte, *apiError) {
		if s == "" {
			return nil, badParam("The JSON Web Key is missing the %s member.", field)
		}
		b, err := unb64(s)
		if err != nil {
			return nil, badParam("The JSON Web Key member %s is not base64url: %v", field, err)
		}
		return b, nil
	}
	switch strings.TrimSuffix(j.Kty, "-HSM") {
	case "RSA":
		var vals [5][]byte
		for i, f := range []struct{ name, v string }{{"n", j.N}, {"e", j.E}, {"d", j.D}, {"p", j.P}, {"q", j.Q}} {
			b, aerr := dec(f.name, f.v)
			if aerr != nil {
				return nil, aerr
			}
			vals[i] = b
		}
		e := new(big.Int).SetBytes(vals[1])
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, badParam("Invalid RSA public exponent.")
		}
		k := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: new(big.Int).SetBytes(vals[0]), E: int(e.Int64())},
			D:         new(big.Int).SetBytes(vals[2]),
			Primes:    []*big.Int{new(big.Int).SetBytes(vals[3]), new(big.Int).SetBytes(vals[4])},
		}
		if err := k.Validate(); err != nil {
			return nil, badParam("The RSA key is not valid: %v", err)
		}
		if b := k.N.BitLen(); b != 2048 && b != 3072 && b != 4096 {
			return nil, badParam("Invalid key size %d: RSA keys can be 2048, 3072 or 4096 bits.", b)
		}
		k.Precompute()
		return k, nil
	case "EC":
		curve, ok := curves[j.Crv]
		if !ok {
			return nil, badParam("Invalid or unsupported curve name %q.", j.Crv)
		}
		d, aerr := dec("d", j.D)
		if aerr != nil {
			return nil, aerr
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(d) < size {
			d = append(make([]byte, size-len(d)), d...)
		}
		k, err := ecdsa.ParseRawPrivateKey(curve, d)
		if err != nil {
			return nil, badParam("The EC key is not valid: %v", err)
		}
		if j.X != "" && j.Y != "" {
			x, _ := unb64(j.X)
			y, _ := unb64(j.Y)
			raw, _ := k.PublicKey.Bytes()
			if len(x) != size || len(y) != size || string(raw[1:1+size]) != string(x) || string(raw[1+size:]) != string(y) {
				return nil, badParam("The EC public key (x, y) does not match the private key d.")
			}
		}
		return k, nil
	}
	return nil, badParam("Invalid or unsupported key type (kty) %q.", j.Kty)
}

func (s *Server) importKey(c *call) (int, any, bool, *apiError) {
	if err := checkName(c.rt.name); err != nil {
		return 0, nil, false, err
	}
	var p importParams
	if err := decode(c.body, &p); err != nil {
		return 0, nil, false, err
	}
	if p.Key == nil {
		return 0, nil, false, badParam("The parameter key is required.")
	}
	if err := checkTags(p.Tags); err != nil {
		return 0, nil, false, err
	}
	kty, aerr := c.v.normKty(p.Key.Kty, p.HSM != nil && *p.HSM)
	if aerr != nil {
		return 0, nil, false, aerr
	}
	priv, aerr := privateFromJWK(p.Key)
	if aerr != nil {
		return 0, nil, false, aerr
	}
	isRSA := strings.HasPrefix(kty, "RSA")
	ops := defaultKeyOps(isRSA)
	if p.Key.KeyOps != nil {
		if ops, aerr = normKeyOps(p.Key.KeyOps, isRSA); aerr != nil {
			return 0, nil, false, aerr
		}
	}
	kv, err := newKeyVersion(newVersionID(), kty, ops, priv)
	if err != nil {
		return 0, nil, false, errf(http.StatusInternalServerError, CodeInternalServerError, "%v", err)
	}
	if aerr := applyAttrs(kv, p.Attributes); aerr != nil {
		return 0, nil, false, aerr
	}
	if len(p.Tags) > 0 {
		kv.Tags = p.Tags
	}
	b, aerr := c.v.addVersion(c, c.rt.name, kv)
	if aerr != nil {
		return 0, nil, false, aerr
	}
	return http.StatusOK, b, true, nil
}
