// Package simulation explores the key lifecycle deterministically, the way
// FoundationDB and TigerBeetle test: one seed chooses a whole run and
// replays it exactly.
//
// A run has one to three server IDs, one of them shared by two or three
// processes half of the time (as a Helm chart renders one
// key_identifier_value for every replica), each process with its own clock
// skewed against the cloud's (seconds, hours or fifteen days, either way)
// and its own SPIRE CA journal. Each process runs the real engine
// (engine.Manager) over an in-memory cloud laid out, as the seed picks,
// like Key Vault (one tag set per generation, rewritten whole) or like Cloud
// KMS (one label map per key ID, shared by its versions, rewritten whole
// from what the writer last read). Every backend call is a step
// the scheduler interleaves with every other: it takes effect, fails before
// taking effect, or takes effect and loses its answer; it may take up to
// its budget, and the clock moves between steps by milliseconds to hours.
// SPIRE's call pattern (prepare a slot at half life, activate it later,
// sign, re-prepare a slot whose key changed at a restart), the engine's
// background work (lease read-backs, retirements, liveness and cleanup
// passes), restarts, clean stops, kill -9 and `gc --apply` happen at
// moments the seed picks. Only one goroutine runs at a time, so the engine's
// own code between calls is part of the interleaving but never a source of
// randomness.
//
// Invariants, checked after every step:
//
//   - no live process has the generation it serves retired, nor fails a
//     signature because its generation was retired;
//   - every signature verifies under the public key of the fingerprint the
//     engine returned, and that key was given to SPIRE;
//   - a process alone on its server ID serves, after a restart, what it
//     served before or a key SPIRE was given by a GenerateKey (counted
//     apart: a key whose commit took effect while its creator was killed,
//     and, on the Cloud KMS layout, a version that never committed whose
//     pending lease a concurrent rewrite of the shared labels dropped; SPIRE
//     then prepares that slot again);
//   - creations per key ID stay within the hourly bound, restarts included
//     (for a server ID shared by k processes, k times the bound: processes
//     sharing an ID cannot be told apart across restarts);
//   - once every process has been quiet for a lease period and two cleanup
//     passes, no generation is left that no live process serves.
package simulation
