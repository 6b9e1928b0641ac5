// Command bench measures what kmskeeper costs an operator, side by side with
// the raw cloud SDKs, against the Azure Key Vault and Cloud KMS emulators:
// SignData overhead, concurrency, rotation stalls, cloud calls per server-day,
// start-up cost, creation storms and the plugin's footprint (issue 8), and
// the CPU each process spends per signature (issue 17, measurement 8: the
// plugin, a host child playing SPIRE and a raw-SDK child, each measured
// alone; the bench binary re-executes itself as those children). The bench
// binary also plays two floor plugins (floor.go): the raw SDK's call behind
// the same go-plugin boundary, with and without the verification, so that
// measurements 1, 2 and 8 tell what any external plugin pays from what
// kmskeeper adds.
//
//	go run ./bench -backend azure|gcp|all [-short] [-only 1,3] [-profile dir]
//
// Every latency figure is a ratio of two samples taken in the same run and
// interleaved where possible, because absolute times on a shared machine
// drift. The plugin rows go through the built binary launched by pluginhost
// exactly as SPIRE launches it; rows that need a moved clock (the server-day,
// the creation storm, the liveness stall) drive the engine in process with
// the real backend against the same emulator and a fake clock, and say so.
//
// The result is one table (measurement, backend, value, target, met); a row
// that could not be measured says why instead of carrying a number.
package main
