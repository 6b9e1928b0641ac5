// Package reliability holds kmskeeper's reliability and security suite: tests
// that drive the built plugin binary exactly as SPIRE does (pluginhost) and
// crash it with SIGKILL at every step of a rotation and of the background
// passes, inject cloud faults alone and in storms, run several servers
// against one vault through a simulated month, re-configure it at runtime,
// and scan everything it logs for secrets.
//
// Every scenario runs once per backend setup (setups_test.go), the setups
// side by side: the in-memory backend shared through a state file, the Azure
// Key Vault emulator (azure_test.go) and the Cloud KMS emulator
// (gcp_test.go).
//
// The default run is sized for CI. KMSKEEPER_LONG=1 runs the long variant
// (more crash iterations per point, a finer simulated month); see
// docs/operations.md.
package reliability
