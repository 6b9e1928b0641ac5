// Package azurekv is kmskeeper's Azure Key Vault and Azure Managed HSM
// backend, built on the official azkeys, azidentity and azcore clients.
//
// It is a drop-in replacement for SPIRE's built-in azure_key_vault key
// manager: it accepts the same plugin_data, names and tags keys exactly as
// the built-in plugin does (spire-key-<UUIDv4>-<key ID>, tags spire-server-td
// and spire-server-id), and so adopts the keys that plugin created with the
// same fingerprints. Each generation of a SPIRE key is its own Key Vault key
// object, because Key Vault cannot delete single versions.
//
// The backend holds no key state: the engine (package engine) caches
// keys, decides what to rotate and retire, and verifies every signature.
// This package turns each engine call into as few vault calls as possible
// (one listing pass at start, no GetKey before a keep-alive update), keeps
// the SDK's retries inside the engine's deadline, and maps the service's
// answers to gRPC codes that name the operation, the key and the fix.
package azurekv
