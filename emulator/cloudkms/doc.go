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
//   - the service's refusals a client must survive: key policies naming a
//     service account that does not exist or a wrongly cased member type,
//     projects without the Cloud KMS API enabled (SERVICE_DISABLED);
//   - opt-in quotas (the regional, softly enforced model the service
//     documents since 2026, or the older per-minute one), fault injection
//     (with RetryInfo advice), request counters, a request log and
//     persistence.
//
// With TLS, the listen port also answers the HTTP endpoints Google serves on
// other host names (OAuth2 token, tokeninfo), and the certificate names
// cloudkms.googleapis.com, oauth2.googleapis.com and www.googleapis.com: a
// client with no endpoint setting, such as SPIRE's built-in gcp_kms, works
// unmodified given hosts entries for those names, the emulator on port 443
// and SSL_CERT_FILE naming its CA.
//
// Start one with [Start]; [Server.ClientOptions] returns what an in-process
// client needs. The same server runs as `kmskeeper emulator gcp`.
//
// Deliberate choices where the service's documentation is silent are listed
// in README.md next to this file.
package cloudkms
