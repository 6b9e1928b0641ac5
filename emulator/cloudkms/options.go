package cloudkms

import "time"

// Options configures a Server. The zero value is a plaintext, unauthenticated
// emulator on a random loopback port with no key rings, whose versions are
// ENABLED at once.
type Options struct {
	// Listen is the gRPC listen address; default "127.0.0.1:0" (loopback, so
	// the unauthenticated emulator is never exposed to the network by default).
	Listen string
	// TLS serves gRPC over TLS with a generated CA and a server certificate for
	// 127.0.0.1, ::1, localhost, cloudkms.googleapis.com,
	// oauth2.googleapis.com, www.googleapis.com and Hostnames, so clients
	// exercise the same transport as against the service. The same port then
	// answers the token and tokeninfo HTTP endpoints too, for clients that
	// reach Google's host names through hosts entries.
	TLS bool
	// Hostnames are extra DNS names (or IPs) for the server certificate.
	Hostnames []string
	// KeyRings are created at start, e.g. "projects/p/locations/l/keyRings/r".
	// CreateKeyRing creates others on demand.
	KeyRings []string
	// AutoCreateKeyRings makes CreateCryptoKey create a missing key ring
	// instead of answering NOT_FOUND as the service does. Off by default.
	AutoCreateKeyRings bool
	// PendingGeneration is how long new versions stay PENDING_GENERATION on
	// the emulator clock (the service takes from milliseconds to seconds; HSM
	// RSA keys are the slowest). Zero means versions are ENABLED at once.
	PendingGeneration time.Duration
	// PendingGenerationHSM, when non-zero, replaces PendingGeneration for
	// keys with protection level HSM.
	PendingGenerationHSM time.Duration
	// DataDir, when set, keeps the state (keys, versions, IAM policies,
	// service accounts, the CA) across restarts.
	DataDir string
	// Principals maps a caller (service account email) to the permissions it
	// holds on every resource, e.g. "cloudkms.cryptoKeyVersions.useToSign",
	// or predefined roles such as "roles/cloudkms.signerVerifier". IAM
	// policies set on key rings and keys grant more. Nil disables identity
	// and permission checks altogether (every caller may do everything).
	Principals map[string][]string
	// AllowUnknownMembers makes SetIamPolicy accept serviceAccount members
	// the emulator does not know. By default, while identity checks are on
	// (Principals set), a policy naming a service account that was neither
	// issued (ServiceAccountJSON, the admin API) nor given as a principal is
	// INVALID_ARGUMENT "Service account <email> does not exist.", as the
	// service answers.
	AllowUnknownMembers bool
	// DisabledProjects are projects in which the Cloud KMS API is not
	// enabled: every call on their resources is PERMISSION_DENIED with an
	// ErrorInfo of reason SERVICE_DISABLED, as the service answers.
	// Server.SetServiceEnabled changes it at run time.
	DisabledProjects []string
	// TokenListen is the listen address of the HTTP OAuth2 token and
	// tokeninfo endpoint service accounts use; default "127.0.0.1:0".
	TokenListen string
	// AdminListen, when set, serves AdminHandler (faults, clock, counters)
	// on this address, e.g. "127.0.0.1:0". Keep it on loopback: it is
	// unauthenticated.
	AdminListen string
	// Clock is the emulator clock; nil means NewClock() (wall clock).
	Clock *Clock
	// Quotas enables the quotas at start (see SetQuotas), counted as
	// QuotaModel says.
	Quotas bool
	// QuotaModel is QuotaRegional (the service's model since 2026: per
	// location, HSM requests per second, enforced only while overloaded)
	// or QuotaPerMinute (the superseded project-wide per-minute regime,
	// always enforced), which the zero value keeps for the callers written
	// against it.
	QuotaModel QuotaModel
	// QuotaLimits overrides the published limits; zero fields keep them.
	QuotaLimits QuotaLimits
	// Logf, when set, receives one line per request and lifecycle events.
	Logf func(format string, args ...any)
}
