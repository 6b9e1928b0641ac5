package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"
)

type rotationPolicyWire struct {
	ID              string          `json:"id,omitempty"`
	LifetimeActions json.RawMessage `json:"lifetimeActions,omitempty"`
	Attributes      *struct {
		ExpiryTime string `json:"expiryTime,omitempty"`
		Created    int64  `json:"created,omitempty"`
		Updated    int64  `json:"updated,omitempty"`
	} `json:"attributes,omitempty"`
}

// defaultLifetimeActions is the policy of a key nobody configured.
var defaultLifetimeActions = json.RawMessage(`[{"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}]`)

// isoDays parses the day/week/month/year ISO-8601 durations rotation
// policies use (P90D, P1Y, P2M, P3W) into days (months = 30, years = 365).
var isoRE = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$`)

func isoDays(s string) (int, bool) {
	m := isoRE.FindStringSubmatch(s)
	if m == nil || s == "P" {
		return 0, false
	}
	days := 0
	for i, mult := range []int{365, 30, 7, 1} {
		if m[i+1] != "" {
			n, _ := strconv.Atoi(m[i+1])
			days += n * mult
		}
	}
	return days, true
}

// rotateKey creates a new version with the same type, size, curve and
// operations (and tags); the rotation policy's expiryTime sets exp.
func (s *Server) rotateKey(c *call) (int, any, bool, *apiError) {
	c.v.mu.Lock()
	k, kv, aerr := c.v.lookup(c.now, c.rt.name, "")
	var tmpl keyVersion
	var policy *rotationPolicy
	var name string
	if aerr == nil {
		tmpl, policy, name = *kv, k.Policy, k.Name
	}
	c.v.mu.Unlock()
	if aerr != nil {
		return 0, nil, false, aerr
	}
	var priv crypto.Signer
	switch old := tmpl.priv.(type) {
	case *rsa.PrivateKey:
		if rk, err := rsa.GenerateKey(rand.Reader, old.N.BitLen()); err == nil {
			priv = rk
		}
	case *ecdsa.PrivateKey:
		if ek, err := ecdsa.GenerateKey(old.Curve, rand.Reader); err == nil {
			priv = ek
		}
	}
	if priv == nil {
		return 0, nil, false, errf(http.StatusInternalServerError, CodeInternalServerError, "rotate: key generation failed")
	}
	nkv, err := newKeyVersion(newVersionID(), tmpl.Kty, slices.Clone(tmpl.KeyOps), priv)
	if err != nil {
		return 0, nil, false, errf(http.StatusInternalServerError, CodeInternalServerError, "rotate: %v", err)
	}
	nkv.Tags = maps.Clone(tmpl.Tags)
	nkv.Exportable = tmpl.Exportable
	if policy != nil && policy.ExpiryTime != "" {
		if d, ok := isoDays(policy.ExpiryTime); ok {
			exp := c.now.Add(time.Duration(d) * 24 * time.Hour).Unix()
			nkv.Exp = &exp
		}
	}
	b, aerr := c.v.addVersion(c, name, nkv)
	if aerr != nil {
		return 0, nil, false, aerr
	}
	return http.StatusOK, b, true, nil
}

func (s *Server) rotationPolicy(c *call) (int, any, bool, *apiError) {
	var in rotationPolicyWire
	if c.rt.op == "UpdateKeyRotationPolicy" {
		if err := decode(c.body, &in); err != nil {
			return 0, nil, false, err
		}
		if in.Attributes != nil && in.Attributes.ExpiryTime != "" {
			d, ok := isoDays(in.Attributes.ExpiryTime)
			if !ok {
				return 0, nil, false, badParam("Invalid expiryTime %q: use an ISO 8601 duration such as P90D.", in.Attributes.ExpiryTime)
			}
			if d < 28 {
				return 0, nil, false, badParam("The expiryTime of a rotation policy must be at least 28 days.")
			}
		}
	}
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	k, _, aerr := c.v.lookup(c.now, c.rt.name, "")
	if aerr != nil {
		return 0, nil, false, aerr
	}
	mutated := false
	if c.rt.op == "UpdateKeyRotationPolicy" {
		p := k.Policy
		if p == nil {
			p = &rotationPolicy{Created: c.now.Unix()}
		}
		p.LifetimeActions = in.LifetimeActions
		p.ExpiryTime = ""
		if in.Attributes != nil {
			p.ExpiryTime = in.Attributes.ExpiryTime
		}
		p.Updated = c.now.Unix()
		k.Policy = p
		mutated = true
	}
	out := rotationPolicyWire{ID: c.base + "/keys/" + k.Name + "/rotationpolicy", LifetimeActions: defaultLifetimeActions}
	out.Attributes = &struct {
		ExpiryTime string `json:"expiryTime,omitempty"`
		Created    int64  `json:"created,omitempty"`
		Updated    int64  `json:"updated,omitempty"`
	}{}
	if p := k.Policy; p != nil {
		out.LifetimeActions = p.LifetimeActions
		if len(out.LifetimeActions) == 0 {
			out.LifetimeActions = json.RawMessage(`[]`)
		}
		out.Attributes.ExpiryTime, out.Attributes.Created, out.Attributes.Updated = p.ExpiryTime, p.Created, p.Updated
	}
	return http.StatusOK, out, mutated, nil
}
