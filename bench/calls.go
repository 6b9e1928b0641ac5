package main

import (
	"fmt"
	"sort"
	"strings"
)

// tally is a cloud's request counts split by what they cost.
type tally struct {
	sign, management, auth int
	byOp                   map[string]int
	c                      cloud
}

func tallyOf(c cloud) tally {
	t := tally{byOp: c.counts(), c: c}
	for o, n := range t.byOp {
		switch c.classify(o) {
		case classSign:
			t.sign += n
		case classManagement:
			t.management += n
		case classAuth:
			t.auth += n
		}
	}
	return t
}

// ops lists the operations of one class as "Name n, ...".
func (t tally) ops(class callClass) string {
	var parts []string
	for o, n := range t.byOp {
		if t.c.classify(o) == class && n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", o, n))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
