package simulation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// record is one generation in the simulated cloud, laid out as a Key Vault
// key object: its own tags (the lease record), written whole.
type record struct {
	ref      string
	keyID    string
	serverID string
	created  time.Time
	updated  time.Time
	leases   []keymanager.Lease
	recent   int
	key      *ecdsa.PrivateKey
	fp       string
	retired  bool
	// creator and committed track what the invariants need: which process
	// incarnation created the generation, and whether its commit took
	// effect (the creator may not have learnt so).
	creator         *incarnation
	committed       bool
	retiredBy       string
	retiredAtStep   int
	retiredAtCloudT time.Time
}

// cloud is the simulated KMS: one trust domain's generations, a clock, and
// the fault rates the seed chose. Only the scheduler goroutine touches it.
type cloud struct {
	now  time.Time
	seq  int
	recs []*record // in creation order: listing order is deterministic
	byFP map[string]*record
}

func (c *cloud) find(ref string) *record {
	for _, r := range c.recs {
		if r.ref == ref && !r.retired {
			return r
		}
	}
	return nil
}

func (c *cloud) generation(r *record) keymanager.Generation {
	return keymanager.Generation{
		KeyID: r.keyID, Ref: r.ref, ServerID: r.serverID, Created: r.created, Updated: r.updated,
		Type: keymanager.ECP256, Leases: slices.Clone(r.leases), RecentCreations: r.recent,
	}
}

// backend is one process incarnation's view of the cloud: a
// keymanager.Backend whose every call is a step the scheduler interleaves.
type backend struct {
	s        *sim
	inc      *incarnation // nil for the operator tool
	serverID string
	cloudT   time.Time
}

var (
	_ keymanager.Backend    = (*backend)(nil)
	_ keymanager.CloudTimer = (*backend)(nil)
)

func (b *backend) CloudTime() time.Time { return b.cloudT }

// do runs one call through the scheduler: effect runs (on the scheduler's
// goroutine) at the call's effect step, unless a fault comes first.
func (b *backend) do(ctx context.Context, op, keyID string, effect func() error) error {
	err := b.s.call(b, op, keyID, effect)
	if err == nil {
		b.cloudT = b.s.cloud.now
	}
	return err
}

func (b *backend) ListGenerations(ctx context.Context) ([]keymanager.Generation, error) {
	var out []keymanager.Generation
	err := b.do(ctx, "List", "", func() error {
		out = nil
		for _, r := range b.s.cloud.recs {
			if !r.retired {
				out = append(out, b.s.cloud.generation(r))
			}
		}
		return nil
	})
	return out, err
}

func (b *backend) Create(ctx context.Context, req keymanager.CreateRequest) (keymanager.Generation, error) {
	var g keymanager.Generation
	err := b.do(ctx, "Create", req.KeyID, func() error {
		c := b.s.cloud
		c.seq++
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
		r := &record{
			ref: fmt.Sprintf("%s-%s-%04d", b.serverID, req.KeyID, c.seq), keyID: req.KeyID, serverID: b.serverID,
			created: c.now, updated: c.now, recent: req.RecentCreations, key: key,
			fp: keymanager.Fingerprint(der), creator: b.inc,
		}
		l := req.Lease
		l.Ref = r.ref
		r.leases = []keymanager.Lease{l}
		c.recs = append(c.recs, r)
		c.byFP[r.fp] = r
		b.s.noteCreate(b, r)
		g = c.generation(r)
		g.Public = &key.PublicKey
		return nil
	})
	return g, err
}

func (b *backend) Fetch(ctx context.Context, g keymanager.Generation) (keymanager.Generation, error) {
	err := b.do(ctx, "Fetch", g.KeyID, func() error {
		r := b.s.cloud.find(g.Ref)
		if r == nil {
			return keymanager.Errorf(codes.NotFound, "sim: key %s not found", g.Ref)
		}
		g.Public = &r.key.PublicKey
		return nil
	})
	return g, err
}

func (b *backend) Sign(ctx context.Context, g keymanager.Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := b.do(ctx, "Sign", g.KeyID, func() error {
		r := b.s.cloud.find(g.Ref)
		if r == nil {
			b.s.noteSignOnRetired(b, g.Ref)
			return keymanager.Errorf(codes.NotFound, "sim: key %s not found", g.Ref)
		}
		var err error
		sig, err = r.key.Sign(rand.Reader, digest, opts)
		return err
	})
	return sig, err
}

// KeepAlive writes the record whole from g.Leases: a concurrent writer's
// lease that g did not carry is lost, as with Key Vault's UpdateKey.
func (b *backend) KeepAlive(ctx context.Context, g keymanager.Generation) (keymanager.Generation, error) {
	err := b.do(ctx, "KeepAlive", g.KeyID, func() error {
		r := b.s.cloud.find(g.Ref)
		if r == nil {
			return keymanager.Errorf(codes.NotFound, "sim: key %s not found", g.Ref)
		}
		var leases []keymanager.Lease
		for _, l := range g.Leases {
			if l.Ref == r.ref {
				leases = append(leases, l)
			}
		}
		b.s.noteLeaseWrite(b, r, leases)
		r.leases = leases
		r.updated = b.s.cloud.now
		g.Updated, g.Leases = r.updated, slices.Clone(r.leases)
		return nil
	})
	return g, err
}

func (b *backend) Refresh(ctx context.Context, g keymanager.Generation) (keymanager.Generation, error) {
	err := b.do(ctx, "Refresh", g.KeyID, func() error {
		r := b.s.cloud.find(g.Ref)
		if r == nil {
			return keymanager.Errorf(codes.NotFound, "sim: key %s not found", g.Ref)
		}
		g.Updated, g.Leases = r.updated, slices.Clone(r.leases)
		return nil
	})
	return g, err
}

func (b *backend) Retire(ctx context.Context, g keymanager.Generation) error {
	return b.do(ctx, "Retire", g.KeyID, func() error {
		r := b.s.cloud.find(g.Ref)
		if r == nil {
			return nil
		}
		r.retired = true
		b.s.noteRetire(b, r)
		return nil
	})
}
