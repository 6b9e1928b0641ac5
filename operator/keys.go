package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// KeyRow is one key generation as `keys list` and `gc` show it.
type KeyRow struct {
	KeyID      string    `json:"key_id"`
	Ref        string    `json:"ref"`
	Type       string    `json:"type,omitempty"`
	ServerID   string    `json:"server_id"`
	ThisServer bool      `json:"this_server"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	State      string    `json:"state"`
	// Cleanup says what the plugin's cleanup does with the key.
	Cleanup string `json:"cleanup"`
	// Holders are the processes holding a serving lease on the key, as
	// "<holder> since <time>" (this server's keys only).
	Holders []string `json:"holders,omitempty"`
	// Error is set by gc --apply when retiring the key failed.
	Error string `json:"error,omitempty"`
}

// ListKeys lists every key of the trust domain in the session's vault or key
// ring and says what each is to this server and what cleanup would do. now
// is the local time; ages are judged on the cloud's time, estimated from the
// listing (engine.CloudNow).
func ListKeys(ctx context.Context, s *Session, o Options, now time.Time) ([]KeyRow, []engine.Assessment, error) {
	o.progress("Listing the keys of trust domain %s in %s ...", s.TrustDomain, s.Config.Backend.Fixed())
	cctx, cancel := o.call(ctx)
	gens, err := s.Backend.ListGenerations(cctx)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("listing keys: %w", err)
	}
	o.progress("Listed %d keys.", len(gens))
	now = engine.CloudNow(s.Backend, gens, now)
	plan := engine.Plan(gens, s.ServerID, now, s.Config.Live().Schedule)
	if o.Decommissioned {
		if err := decommission(plan, s, now); err != nil {
			return nil, nil, err
		}
	}
	rows := make([]KeyRow, 0, len(plan))
	for _, a := range plan {
		r := KeyRow{
			KeyID: a.KeyID, Ref: a.Ref, ServerID: a.ServerID, ThisServer: s.ServerID != "" && a.ServerID == s.ServerID,
			Created: a.Created, Updated: a.Updated, State: string(a.State), Cleanup: "keep",
		}
		if a.Type != engine.KeyTypeUnspecified {
			r.Type = a.Type.String()
		}
		if a.Retire {
			r.Cleanup = "retire"
		}
		if r.ThisServer {
			for _, l := range a.Leases {
				if l.Ref == a.Ref {
					r.Holders = append(r.Holders, l.Holder+" since "+l.Renewed.UTC().Format(time.RFC3339))
				}
			}
		}
		rows = append(rows, r)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].ThisServer != rows[j].ThisServer {
			return rows[i].ThisServer
		}
		if rows[i].ServerID != rows[j].ServerID {
			return rows[i].ServerID < rows[j].ServerID
		}
		if rows[i].KeyID != rows[j].KeyID {
			return rows[i].KeyID < rows[j].KeyID
		}
		return rows[i].Created.After(rows[j].Created)
	})
	return rows, plan, nil
}

// StateDecommissioned is a generation of a server that the operator says
// has stopped for good (gc --decommissioned).
const StateDecommissioned engine.State = "decommissioned"

// decommission marks every generation of the session's server for
// retirement, unless one of them shows that a process may still serve it:
// a running kmskeeper keeps each key it serves updated (created, rotated or
// kept alive) at least every keep-alive age plus its liveness interval, and
// this tool cannot know the interval a server runs with, so a generation
// updated within the lease period (engine.LeaseTTL: the keep-alive age
// plus two of the longest intervals, 72 h) refuses the whole decommission.
func decommission(plan []engine.Assessment, s *Session, now time.Time) error {
	if s.ServerID == "" {
		return fmt.Errorf("decommissioning: the configuration names no server ID (key_identifier_file does not exist): set key_identifier_value to the server ID of the keys to retire")
	}
	sched := s.Config.Live().Schedule
	quiet := engine.LeaseTTL(sched)
	for _, a := range plan {
		if a.ServerID != s.ServerID {
			continue
		}
		last := a.Updated
		if a.Created.After(last) {
			last = a.Created
		}
		if now.Sub(last) < quiet {
			return fmt.Errorf("decommissioning server %s: its key %s (%s) was updated %s ago, so a process may still serve it (a running server updates every key it serves at least every %s); stop that server, and run gc again once %s have passed since the update",
				s.ServerID, a.KeyID, a.Ref, now.Sub(last).Round(time.Minute), quiet, quiet)
		}
	}
	for i := range plan {
		if plan[i].ServerID == s.ServerID {
			plan[i].State, plan[i].Retire = StateDecommissioned, true
		}
	}
	return nil
}

// PrintKeys writes rows as a table, or as JSON when asJSON is set.
func PrintKeys(w io.Writer, rows []KeyRow, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []KeyRow{}
		}
		return enc.Encode(rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No keys of this trust domain were found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tTYPE\tSERVER\tUPDATED\tSTATE\tCLEANUP\tCLOUD KEY")
	for _, r := range rows {
		server := r.ServerID
		if r.ThisServer {
			server += " (this server)"
		}
		typ := r.Type
		if typ == "" {
			typ = "-"
		}
		cleanup := r.Cleanup
		if r.Error != "" {
			cleanup += " FAILED: " + r.Error
		}
		if r.State == string(engine.StateHeld) && len(r.Holders) > 0 {
			cleanup += " (leased by " + strings.Join(r.Holders, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.KeyID, typ, server, r.Updated.UTC().Format(time.RFC3339), r.State, cleanup, r.Ref)
	}
	return tw.Flush()
}

// GC runs the plugin's retirement rule once, as a process that serves
// nothing and counts every lease: it lists, plans, and when apply is set
// retires what the plan marks (this server's settled superseded generations
// and other servers' keys not kept alive for the stale period), each after
// reading it again (engine.Recheck), so that a server running beside it
// keeps everything it serves. It returns every row with its outcome, and an
// error if any retirement failed.
func GC(ctx context.Context, s *Session, o Options, now time.Time, apply bool) ([]KeyRow, error) {
	rows, plan, err := ListKeys(ctx, s, o, now)
	if err != nil {
		return nil, err
	}
	gens := make([]engine.Generation, len(plan))
	for i, a := range plan {
		gens[i] = a.Generation
	}
	facts := engine.Facts{ServerID: s.ServerID, Now: engine.CloudNow(s.Backend, gens, now), Schedule: s.Config.Live().Schedule}
	if !apply {
		return rows, nil
	}
	if s.ServerID == "" {
		return rows, fmt.Errorf("this server has no identity yet (key_identifier_file does not exist), so no key is known to be superseded; nothing was retired")
	}
	byRef := make(map[string]*KeyRow, len(rows))
	for i := range rows {
		byRef[rows[i].Ref] = &rows[i]
	}
	var failed int
	for _, a := range plan {
		if !a.Retire {
			continue
		}
		r := byRef[a.Ref]
		cctx, cancel := o.call(ctx)
		err := error(nil)
		if a.State != StateDecommissioned {
			var checked engine.Assessment
			checked, err = engine.Recheck(cctx, s.Backend, a, gens, facts)
			if err == nil && !checked.Retire {
				cancel()
				r.State, r.Cleanup = string(checked.State), "keep"
				o.progress("Keeping %s (%s): read again, it is %s", a.Ref, a.KeyID, checked.State)
				continue
			}
		}
		if err == nil {
			o.progress("Retiring %s (%s, %s) ...", a.Ref, a.KeyID, a.State)
			err = s.Backend.Retire(cctx, a.Generation)
		}
		cancel()
		if err != nil {
			r.Error = err.Error()
			failed++
			continue
		}
		r.Cleanup = "retired"
	}
	if failed > 0 {
		return rows, fmt.Errorf("%d of the keys to retire could not be retired; see the table", failed)
	}
	return rows, nil
}
