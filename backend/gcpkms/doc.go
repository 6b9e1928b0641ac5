// Package gcpkms keeps SPIRE's keys in Google Cloud KMS, through the official
// cloud.google.com/go/kms client.
//
// Each SPIRE key ID of a server is one CryptoKey, named and labelled exactly
// as SPIRE's built-in gcp_kms plugin names and labels it
// (spire-key-<serverID>-<keyID>; spire-server-td, spire-server-id,
// spire-active, spire-last-update), so that the keys it created are adopted
// with their fingerprints. A generation (engine.Generation) is one
// CryptoKeyVersion: rotation adds a version and schedules the superseded one
// for destruction. Other servers' keys are seen one generation per CryptoKey,
// so that start-up costs one filtered listing plus, for this server's keys
// only, one version listing and one public key each.
//
// A CryptoKey's labels are also the lease record of all its versions
// (Cloud KMS labels keys, not versions): spire-last-update is when the
// record was last written, spire-lease-<holder> the holder's serving leases
// on up to 3 versions ("<version>-<unix ms>", "-p" appended while pending,
// joined by '_') and spire-recent the creation count of the version created
// last. Every time the plugin writes
// or judges is Cloud KMS's, estimated as a lower bound from the Date header
// and creation times of its answers, never the host's clock once an answer
// has come.
//
// Every call runs inside the engine's deadline: RESOURCE_EXHAUSTED and
// UNAVAILABLE are retried with backoff until shortly before it ends, new
// versions are waited for while PENDING_GENERATION, and background writes
// (liveness labels, destructions) are paced under the 60 writes a minute
// project quota. Signing checks the CRC32C round trip end to end
// (digest_crc32c sent; verified_digest_crc32c, signature_crc32c, name and
// pem_crc32c checked).
package gcpkms
