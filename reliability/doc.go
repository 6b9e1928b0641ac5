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
// A superseded generation is retired only once it has settled, judged on
// the cloud's clock (settle_test.go): the scenarios move the setups' clocks
// and wait for the plugin's passes rather than for time to pass.
//
// The scenarios that mostly wait for those passes and barely time anything
// (TestCrash, TestHAMonth, TestGCBesideRunningServer,
// TestSharedIdentifierAdoption) call t.Parallel: they run two at a time
// (-parallel, the CPU count) once the others, whose lasting faults and slow
// answers are timed against deadlines, have run alone.
//
// The default run is sized for CI. KMSKEEPER_LONG=1 runs the long variant
// (more crash iterations per point, a finer simulated month); see
// docs/operations.md.
package reliability
