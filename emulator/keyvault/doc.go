// Package keyvault is a loopback emulator of Azure Key Vault (Standard and
// Premium) and Azure Managed HSM, together with the Entra ID endpoints the
// official SDK needs to get tokens: an OpenID authority with a
// client-credentials token endpoint (client secret or workload identity
// federation) and an App Service style managed-identity endpoint.
//
// It exists so that the kmskeeper backend, the demo and users' CI can drive the
// unmodified azkeys and azidentity clients over real TLS and the real
// authentication handshake, without a cloud account. It behaves like the
// service, not like kmskeeper expects: soft delete and 409 conflicts, paging
// with absolute nextLinks, the service's error codes, HSM key types refused on
// Standard vaults, per-vault throttling, token signature/audience/expiry checks,
// and the awkward answers listed below.
//
// # Reaching a vault
//
// The emulator serves HTTPS with a certificate issued by its own CA (CAPEM,
// CertPool, WriteFiles). Every vault and Managed HSM can be reached in two
// ways:
//
//   - on its own loopback port: VaultURL(name) returns https://127.0.0.1:<port>/,
//     which needs no DNS set-up (the main port, URL(), reaches the first vault);
//   - on the main port by host name, https://<name>.vault.azure.net or
//     https://<name>.managedhsm.azure.net, when that name resolves to loopback
//     (or a test's dialer sends it there); the certificate covers both.
//
// With IP-address URLs the azkeys client needs
// DisableChallengeResourceVerification, because the challenge resource
// (https://vault.azure.net) cannot be a suffix of an IP address.
//
// # Authentication
//
// An anonymous request gets the service's 401 challenge naming the emulator as
// authority (https://<emulator>/<tenant>). The authority serves
// /<tenant>/v2.0/.well-known/openid-configuration, /<tenant>/oauth2/v2.0/token
// (client credentials) and /<tenant>/discovery/v2.0/keys; the managed identity
// endpoint is /msi/token (plain HTTP on MSIURL(), and on the TLS port) and
// checks the X-IDENTITY-HEADER. Tokens are ES256 JWTs signed by the emulator;
// their lifetime follows the real wall clock so that Clock changes never
// invalidate an SDK's cached token.
//
// The token endpoint takes a client secret or, for workload identity
// (azidentity's WorkloadIdentityCredential, also tried by
// DefaultAzureCredential), a federated token as jwt-bearer client assertion.
// The assertion is checked as Entra checks it against the app's federated
// identity credentials (Options.FederatedCredentials): a signed JWT, within
// its validity period (5 minutes of skew), whose iss and sub match a
// credential exactly and whose aud is api://AzureADTokenExchange. Refusals
// carry Entra's codes (AADSTS700211 issuer, 700213 subject, 700212 audience,
// 700024 expired, 70025 no federated credential, 50027 malformed). One check
// is left out: the signature is not verified against the issuer's keys,
// which Entra fetches from the issuer's OIDC discovery document over the
// network. IssueFederatedToken and WriteFederatedTokenFile mint tokens as an
// AKS cluster's issuer would; once a token file is written, Env offers it as
// AZURE_FEDERATED_TOKEN_FILE. Certificate credentials (a client assertion
// signed by the app's own certificate) are refused with AADSTS700027.
//
// Client notes: azidentity credentials need DisableInstanceDiscovery (MSAL
// otherwise asks login.microsoftonline.com about the unknown authority), also
// for DefaultAzureCredential driven by the env file. Without --data-dir the
// token signing key changes on every start, so a long-running client must
// restart with the emulator (MSAL caches managed-identity tokens per process).
// Errors that the service qualifies with an inner code (ForbiddenByRbac,
// KeyDisabled, ObjectIsDeletedButRecoverable) carry it in
// {"error":{"innererror":{"code"}}}; azcore's ErrorCode is the outer code.
//
// # The service's awkward answers
//
// Where the service behaves in ways a client must survive, the emulator
// does too, by default; an option turns back to the simpler behaviour where
// a test needs it:
//
//   - Soft delete is asynchronous (Options.DeletionDelay, default a few
//     seconds on the emulator's clock): right after DELETE answers 200, GET
//     /deletedkeys/{name} answers 404 "Deleted Key not found", the deleted
//     listing leaves the key out, and purge, recover and re-creation answer
//     409 Conflict with inner code ObjectIsBeingDeleted. A negative delay
//     makes deletion instant.
//   - The throttler's 429 answers carry code Throttled, inner code
//     VaultRequestTypeLimitReached and no Retry-After header, as captured
//     from the service (Options.ThrottleRetryAfter adds the header).
//   - Listing pages are cut by a cursor that walks over live and deleted
//     names alike, so a page can hold fewer keys than asked, or none, and
//     still carry a nextLink (Options.FullPages fills every page).
//   - A disabled key is still returned by GET (its attributes say it is
//     disabled) and still verifies, encrypts and wraps; sign, decrypt and
//     unwrapKey are refused with 403 KeyDisabled.
//   - Only the published api-versions are accepted, per service: a vault
//     takes 7.0 to 7.6, 2025-07-01 and their previews; a Managed HSM from
//     7.2 on, without the newest preview. Others get 400 BadParameter "The
//     specified version (...) is not recognized". 2015-06-01 and 2016-10-01,
//     which the service still takes, are refused: their answers differ in
//     ways the emulator does not model.
//   - The authentication challenge always names the resource
//     https://vault.azure.net (https://managedhsm.azure.net), so a client
//     that reaches a vault by a private link alias
//     (<vault>.privatelink.vaultcore.azure.net) fails the SDK's challenge
//     check, as it does against the service.
//
// # Test controls
//
// Faults (InjectFault), throttling (SetThrottling), the clock (Clock) and
// request counters (Counts) are available in process and, for an emulator run
// by the CLI, through the admin HTTP API under /_emulator/ (loopback clients
// only; see admin.go).
package keyvault
