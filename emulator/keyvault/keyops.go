package keyvault

import (
	"crypto/rsa"
	"net/http"
	"strings"
)

type opParams struct {
	Alg    string `json:"alg"`
	Value  string `json:"value"`
	Digest string `json:"digest"`
}

type opResult struct {
	Kid   string `json:"kid"`
	Value string `json:"value"`
}

type verifyResult struct {
	Value bool `json:"value"`
}

// keyOpNames maps operations to their key_ops names and to the word the
// service uses in messages.
var keyOpNames = map[string]string{
	"Sign": "sign", "Verify": "verify", "Encrypt": "encrypt", "Decrypt": "decrypt",
	"WrapKey": "wrapKey", "UnwrapKey": "unwrapKey",
}

// keyOperation runs sign, verify, encrypt, decrypt, wrapKey and unwrapKey.
// Signing uses the digest as given: the caller has hashed the data.
func (s *Server) keyOperation(c *call) (any, *apiError) {
	var p opParams
	if err := decode(c.body, &p); err != nil {
		return nil, err
	}
	opName := keyOpNames[c.rt.op]

	c.v.mu.Lock()
	k, kv, aerr := c.v.lookup(c.now, c.rt.name, c.rt.version)
	var name string
	var ver *keyVersion
	if aerr == nil {
		// A copy: UpdateKey replaces the version's fields under the lock
		// while this operation runs on.
		cp := *kv
		name, ver = k.Name, &cp
	}
	c.v.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	// A disabled key still verifies, encrypts and wraps, as on the
	// service: only the operations that use the private key are refused.
	if !ver.Enabled && (opName == "sign" || opName == "decrypt" || opName == "unwrapKey") {
		return nil, forbidden(CodeKeyDisabled, "Operation %s is not allowed on a disabled key.", opName)
	}
	if !ver.hasOp(opName) {
		return nil, forbidden("", "Operation %s is not permitted on this key.", opName)
	}
	// nbf/exp restrict the operations that produce new protected data;
	// verify, decrypt and unwrapKey keep working on expired keys.
	if opName == "sign" || opName == "encrypt" || opName == "wrapKey" {
		now := c.now.Unix()
		if ver.NBF != nil && now < *ver.NBF {
			return nil, forbidden("", "Operation %s is not allowed on a key that is not yet valid (nbf).", opName)
		}
		if ver.Exp != nil && now >= *ver.Exp {
			return nil, forbidden("", "Operation %s is not allowed on an expired key (exp).", opName)
		}
	}
	kid := kidOf(c.base, name, ver.Version)
	value, err := unb64(p.Value)
	if err != nil {
		return nil, badParam("The parameter value is not base64url: %v", err)
	}
	switch c.rt.op {
	case "Sign":
		a, aerr := checkSign(p.Alg, ver.priv, value)
		if aerr != nil {
			return nil, aerr
		}
		sig, err := signDigest(ver.priv, a, value)
		if err != nil {
			return nil, errf(http.StatusInternalServerError, CodeInternalServerError, "sign: %v", err)
		}
		return opResult{Kid: kid, Value: b64(sig)}, nil
	case "Verify":
		digest, err := unb64(p.Digest)
		if err != nil {
			return nil, badParam("The parameter digest is not base64url: %v", err)
		}
		a, aerr := checkSign(p.Alg, ver.priv, digest)
		if aerr != nil {
			return nil, aerr
		}
		return verifyResult{Value: verifyDigest(ver.priv.Public(), a, digest, value)}, nil
	default:
		rk, ok := ver.priv.(*rsa.PrivateKey)
		if !ok {
			return nil, badParam("Operation %s is not supported for key type %s.", opName, ver.Kty)
		}
		dec := c.rt.op == "Decrypt" || c.rt.op == "UnwrapKey"
		out, aerr := rsaCrypt(rk, strings.ToUpper(p.Alg), dec, value)
		if aerr != nil {
			return nil, aerr
		}
		return opResult{Kid: kid, Value: b64(out)}, nil
	}
}
