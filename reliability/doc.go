// Package reliability holds kmskeeper's reliability and security suite: tests
// that drive the built plugin binary exactly as SPIRE does (pluginhost) and
// crash it with SIGKILL at every step of a rotation and of the background
// passes, inject cloud faults alone and in storms, run several servers
// against one vault through a simulated month, re-configure it at runtime,
// and scan everything it logs for secrets.
//
// Every scenario runs once per backend setup (setups_test.go): the in-memory
// backend shared through a state file, and the Azure Key Vault and Cloud KMS
// emulators once their backends are built in.
//
// The default run is sized for CI. KMSKEEPER_LONG=1 runs the long variant
// (more crash iterations per point, a finer simulated month); see
// docs/operations.md.
package reliability
