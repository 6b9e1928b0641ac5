package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
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
	// Error is set by gc --apply when retiring the key failed.
	Error string `json:"error,omitempty"`
}

// ListKeys lists every key of the trust domain in the session's vault or key
// ring and says what each is to this server and what cleanup would do.
func ListKeys(ctx context.Context, s *Session, o Options, now time.Time) ([]KeyRow, []keymanager.Assessment, error) {
	o.progress("Listing the keys of trust domain %s in %s ...", s.TrustDomain, s.Config.Backend.Fixed())
	cctx, cancel := o.call(ctx)
	gens, err := s.Backend.ListGenerations(cctx)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("listing keys: %w", err)
	}
	o.progress("Listed %d keys.", len(gens))
	plan := keymanager.Plan(gens, s.ServerID, now, s.Config.Live().Schedule.StaleAfter)
	rows := make([]KeyRow, 0, len(plan))
	for _, a := range plan {
		r := KeyRow{
			KeyID: a.KeyID, Ref: a.Ref, ServerID: a.ServerID, ThisServer: s.ServerID != "" && a.ServerID == s.ServerID,
			Created: a.Created, Updated: a.Updated, State: string(a.State), Cleanup: "keep",
		}
		if a.Type != keymanager.KeyTypeUnspecified {
			r.Type = a.Type.String()
		}
		if a.Retire {
			r.Cleanup = "retire"
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.KeyID, typ, server, r.Updated.UTC().Format(time.RFC3339), r.State, cleanup, r.Ref)
	}
	return tw.Flush()
}

// GC runs the plugin's cleanup logic once: it lists, plans, and when apply is
// set retires what the plan marks (this server's superseded generations and
// other servers' keys not kept alive for the stale period). It returns every
// row with its outcome, and an error if any retirement failed.
func GC(ctx context.Context, s *Session, o Options, now time.Time, apply bool) ([]KeyRow, error) {
	rows, plan, err := ListKeys(ctx, s, o, now)
	if err != nil {
		return nil, err
	}
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
		o.progress("Retiring %s (%s, %s) ...", a.Ref, a.KeyID, a.State)
		r := byRef[a.Ref]
		cctx, cancel := o.call(ctx)
		err := s.Backend.Retire(cctx, a.Generation)
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
