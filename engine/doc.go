// Package engine is the heart of kmskeeper: SPIRE's KeyManager
// semantics (GenerateKey replaces, GetPublicKey(s) from memory, SignData on a
// digest) over a small Backend interface that each cloud implements.
//
// The engine owns every rule that does not depend on a cloud: keys are served
// from memory; no lock is held across a backend call, so signing continues
// while a rotation creates its new key; the cloud is the source of truth, so
// superseded generations are found again by listing after a crash; creations
// per key ID are bounded; every call runs inside a budget shorter than SPIRE's
// 30 s deadline; and every signature is verified before it is returned.
package engine
