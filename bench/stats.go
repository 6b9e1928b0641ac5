package main

import (
	"fmt"
	"slices"
	"time"
)

// samples are latencies of one kind of call.
type samples []time.Duration

// pct returns the p-th percentile (0 < p <= 100), nearest rank.
func (s samples) pct(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	rank := int(p/100*float64(len(c))+0.999999) - 1
	return c[min(max(rank, 0), len(c)-1)]
}

// ratio divides two durations; a zero denominator gives 0.
func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// ms renders a duration in milliseconds with two decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
