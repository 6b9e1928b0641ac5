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
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// leaseRecord is where leases are kept, written whole: a Key Vault key's
// tags (one per generation), or a Cloud KMS CryptoKey's labels (shared by
// every version of a key ID, with one write time).
type leaseRecord struct {
	leases  []engine.Lease
	updated time.Time
}

// record is one generation in the simulated cloud.
type record struct {
	ref      string
	keyID    string
	serverID string
	created  time.Time
	rec      *leaseRecord
	recent   int
	key      *ecdsa.PrivateKey
	fp       string
	retired  bool
	// creator and committed track what the invariants need: which process
	// incarnation created the generation, and whether its commit took
	// effect (the creator may not have learnt so).
	creator         *incarnation
	committed       bool
	pendingLost     bool // its pending lease was dropped before any commit
	retiredBy       string
	retiredAtStep   int
	retiredAtCloudT time.Time
}

// cloud is the simulated KMS: one trust domain's generations, a clock, and
// the fault rates the seed chose. Only the scheduler goroutine touches it.
type cloud struct {
	// shared lays the cloud out like Cloud KMS: the generations of one
	// server's key ID share one lease record, and a write replaces it whole
	// from what the writer last read (carried in Generation.Labels), so a
	// write for one version can drop a lease on another.
	shared bool
	groups map[string]*leaseRecord
	now    time.Time
	seq    int
	recs   []*record // in creation order: listing order is deterministic
	byFP   map[string]*record
}

func (c *cloud) find(ref string) *record {
	for _, r := range c.recs {
		if r.ref == ref && !r.retired {
			return r
		}
	}
	return nil
}

func (c *cloud) generation(r *record) engine.Generation {
	g := engine.Generation{
		KeyID: r.keyID, Ref: r.ref, ServerID: r.serverID, Created: r.created, Updated: r.rec.updated,
		Type: engine.ECP256, Leases: slices.Clone(r.rec.leases), RecentCreations: r.recent,
	}
	if c.shared {
		g.Labels = map[string]string{labelLeases: encodeLeases(r.rec.leases)}
	}
	return g
}

// labelLeases carries, in a Generation's Labels, the record as the reader
// saw it: the shared layout writes it back, as the Cloud KMS backend writes
// the label map it last read.
const labelLeases = "sim-leases"

func encodeLeases(leases []engine.Lease) string {
	parts := make([]string, len(leases))
	for i, l := range leases {
		parts[i] = fmt.Sprintf("%s|%s|%d|%t", l.Holder, l.Ref, l.Renewed.UnixNano(), l.Pending)
	}
	return strings.Join(parts, ";")
}

func decodeLeases(v string) []engine.Lease {
	var out []engine.Lease
	for part := range strings.SplitSeq(v, ";") {
		f := strings.Split(part, "|")
		if len(f) != 4 {
			continue
		}
		n, _ := strconv.ParseInt(f[2], 10, 64)
		out = append(out, engine.Lease{Holder: f[0], Ref: f[1], Renewed: time.Unix(0, n), Pending: f[3] == "true"})
	}
	return out
}

// write records on r the leases of g.Leases that name r (read whole from
// base, the record as the writer last saw it). In the shared layout the
// other versions' leases come from base: one another process wrote since is
// lost, as on Cloud KMS. A holder keeps leases on at most 3 versions.
func (c *cloud) write(r *record, base, leases []engine.Lease) {
	var out []engine.Lease
	if c.shared {
		for _, l := range base {
			if l.Ref != r.ref {
				out = append(out, l)
			}
		}
	}
	for _, l := range leases {
		if l.Ref == r.ref {
			out = append(out, l)
		}
	}
	if c.shared {
		out = capPerHolder(out, r.ref)
		// A version's pending lease dropped by this write: if its
		// creation never commits, nothing says it was never served.
		for _, l := range r.rec.leases {
			if l.Pending && !slices.Contains(out, l) {
				for _, o := range c.recs {
					if o.ref == l.Ref && !o.committed {
						o.pendingLost = true
					}
				}
			}
		}
	}
	r.rec.leases = out
	r.rec.updated = c.now
}

// capPerHolder keeps each holder's leases on its 3 highest versions, and
// always the one on keep.
func capPerHolder(leases []engine.Lease, keep string) []engine.Lease {
	var out []engine.Lease
	for _, l := range leases {
		higher := 0
		for _, o := range leases {
			if o.Holder == l.Holder && o.Ref > l.Ref {
				higher++
			}
		}
		if higher < 3 || l.Ref == keep {
			out = append(out, l)
		}
	}
	return out
}

// recordFor returns the lease record of a new generation.
func (c *cloud) recordFor(serverID, keyID string) *leaseRecord {
	if !c.shared {
		return &leaseRecord{}
	}
	k := serverID + "/" + keyID
	if c.groups[k] == nil {
		c.groups[k] = &leaseRecord{}
	}
	return c.groups[k]
}

// backend is one process incarnation's view of the cloud: a
// engine.Backend whose every call is a step the scheduler interleaves.
type backend struct {
	s        *sim
	inc      *incarnation // nil for the operator tool
	serverID string
	cloudT   time.Time
}

var (
	_ engine.Backend    = (*backend)(nil)
	_ engine.CloudTimer = (*backend)(nil)
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

func (b *backend) ListGenerations(ctx context.Context) ([]engine.Generation, error) {
	var out []engine.Generation
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

func (b *backend) Create(ctx context.Context, req engine.CreateRequest) (engine.Generation, error) {
	var g engine.Generation
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
			created: c.now, rec: c.recordFor(b.serverID, req.KeyID), recent: req.RecentCreations, key: key,
			fp: engine.Fingerprint(der), creator: b.inc,
		}
		l := req.Lease
		l.Ref = r.ref
		c.write(r, r.rec.leases, []engine.Lease{l})
		c.recs = append(c.recs, r)
		c.byFP[r.fp] = r
		b.s.noteCreate(b, r)
		g = c.generation(r)
		g.Public = &key.PublicKey
		return nil
	})
	return g, err
}

func (b *backend) Fetch(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	err := b.do(ctx, "Fetch", g.KeyID, func() error {
		r := b.s.cloud.find(g.Ref)
		if r == nil {
			return engine.Errorf(codes.NotFound, "sim: key %s not found", g.Ref)
		}
		g.Public = &r.key.PublicKey
		return nil
	})
	return g, err
}

func (b *backend) Sign(ctx context.Context, g engine.Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := b.do(ctx, "Sign", g.KeyID, func() error {
		r := b.s.cloud.find(g.Ref)
		if r == nil {
			b.s.noteSignOnRetired(b, g.Ref)
			return engine.Errorf(codes.NotFound, "sim: key %s not found", g.Ref)
		}
		var err error
		sig, err = r.key.Sign(rand.Reader, digest, opts)
		return err
	})
	return sig, err
}

// KeepAlive writes the record whole from g.Leases: a concurrent writer's
// lease that g did not carry is lost, as with Key Vault's UpdateKey.
func (b *backend) KeepAlive(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	err := b.do(ctx, "KeepAlive", g.KeyID, func() error {
		r := b.s.cloud.find(g.Ref)
		if r == nil {
			return engine.Errorf(codes.NotFound, "sim: key %s not found", g.Ref)
		}
		var leases []engine.Lease
		for _, l := range g.Leases {
			if l.Ref == r.ref {
				leases = append(leases, l)
			}
		}
		b.s.noteLeaseWrite(b, r, leases)
		base := r.rec.leases
		if v, ok := g.Labels[labelLeases]; ok {
			base = decodeLeases(v)
		}
		b.s.cloud.write(r, base, leases)
		fresh := b.s.cloud.generation(r)
		g.Updated, g.Leases, g.Labels = fresh.Updated, fresh.Leases, fresh.Labels
		return nil
	})
	return g, err
}

func (b *backend) Refresh(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	err := b.do(ctx, "Refresh", g.KeyID, func() error {
		r := b.s.cloud.find(g.Ref)
		if r == nil {
			return engine.Errorf(codes.NotFound, "sim: key %s not found", g.Ref)
		}
		fresh := b.s.cloud.generation(r)
		g.Updated, g.Leases, g.Labels = fresh.Updated, fresh.Leases, fresh.Labels
		return nil
	})
	return g, err
}

func (b *backend) Retire(ctx context.Context, g engine.Generation) error {
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

func (c *cloud) layout() string {
	if c.shared {
		return "Cloud KMS layout"
	}
	return "Key Vault layout"
}
