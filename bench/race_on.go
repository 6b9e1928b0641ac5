//go:build race

package main

// raceEnabled builds the plugin with the race detector when the harness
// itself runs under it (go test -race), so the CI run checks both.
const raceEnabled = true
