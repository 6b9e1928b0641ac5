package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Verdict says whether a row met its target.
type Verdict string

// Verdicts.
const (
	Met         Verdict = "yes"
	Missed      Verdict = "NO"
	Info        Verdict = "n/a" // reported figure without a target
	NotMeasured Verdict = "not measured"
)

// Row is one line of the result table.
type Row struct {
	// ID is the measurement number of issue 8 (1-7; 8 is issue 17's), used by -only.
	ID          int
	Measurement string
	Backend     string
	// Value is the measured figure, or "not measured: <reason>".
	Value   string
	Target  string
	Verdict Verdict
}

// notMeasured returns a row that says why it carries no figure.
func notMeasured(id int, measurement, backend, target string, err error) Row {
	return Row{ID: id, Measurement: measurement, Backend: backend, Target: target,
		Value: "not measured: " + oneLine(err.Error()), Verdict: NotMeasured}
}

// verdict turns a comparison into a Verdict.
func verdict(ok bool) Verdict {
	if ok {
		return Met
	}
	return Missed
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// printTable writes rows as a Markdown table, so the output pastes into
// BENCHMARKS.md unchanged.
func printTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| # | Measurement | Backend | Value | Target | Met? |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s |\n", r.ID, esc(r.Measurement), r.Backend, esc(r.Value), esc(r.Target), r.Verdict)
	}
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// sortRows orders rows by measurement number, keeping each measurement's
// own order.
func sortRows(rows []Row) {
	slices.SortStableFunc(rows, func(a, b Row) int { return a.ID - b.ID })
}
