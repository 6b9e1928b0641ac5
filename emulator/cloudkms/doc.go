// Package cloudkms is a local Google Cloud KMS emulator: a loopback gRPC server
// for google.cloud.kms.v1.KeyManagementService and google.iam.v1.IAMPolicy that
// the official cloud.google.com/go/kms/apiv1 client talks to unmodified.
//
// It exists because Google ships no Cloud KMS emulator, and the public fakes do
// not sign. kmskeeper's Cloud KMS backend, the demo and users' CI need a KMS
// that behaves like the service where a SPIRE KeyManager can tell the
// difference:
//
//   - key rings, CryptoKeys (ASYMMETRIC_SIGN, SOFTWARE and HSM), versions 1, 2,
//     ... with the version state machine (PENDING_GENERATION, ENABLED, DISABLED,
//     DESTROY_SCHEDULED, DESTROYED) driven by an emulator [Clock];
//   - GetPublicKey and AsymmetricSign with the CRC32C integrity fields;
//   - List calls with paging and the documented filter language;
//   - IAM policies (version 3, etags) and, when principals are configured,
//     permission checks per caller (service-account JWTs or access tokens from
//     the emulator's own token endpoint);
//   - opt-in quotas, fault injection (with RetryInfo advice), request counters,
//     a request log and persistence.
//
// Start one with [Start]; [Server.ClientOptions] returns what an in-process
// client needs. The same server runs as `kmskeeper emulator gcp`.
//
// Deliberate choices where the service's documentation is silent are listed
// in README.md next to this file.
package cloudkms
