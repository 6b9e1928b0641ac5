package cloudkms

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// roles maps the predefined roles the emulator understands to the cloudkms
// permissions they contain (the subset of each role that this API uses).
var roles = map[string][]string{
	"roles/cloudkms.admin": {
		"cloudkms.keyRings.create", "cloudkms.keyRings.get", "cloudkms.keyRings.list",
		"cloudkms.keyRings.getIamPolicy", "cloudkms.keyRings.setIamPolicy",
		"cloudkms.cryptoKeys.create", "cloudkms.cryptoKeys.get", "cloudkms.cryptoKeys.list", "cloudkms.cryptoKeys.update",
		"cloudkms.cryptoKeys.getIamPolicy", "cloudkms.cryptoKeys.setIamPolicy",
		"cloudkms.cryptoKeyVersions.create", "cloudkms.cryptoKeyVersions.get", "cloudkms.cryptoKeyVersions.list",
		"cloudkms.cryptoKeyVersions.update", "cloudkms.cryptoKeyVersions.destroy", "cloudkms.cryptoKeyVersions.restore",
	},
	"roles/cloudkms.viewer": {
		"cloudkms.keyRings.get", "cloudkms.keyRings.list", "cloudkms.keyRings.getIamPolicy",
		"cloudkms.cryptoKeys.get", "cloudkms.cryptoKeys.list", "cloudkms.cryptoKeys.getIamPolicy",
		"cloudkms.cryptoKeyVersions.get", "cloudkms.cryptoKeyVersions.list",
	},
	"roles/cloudkms.signer":          {"cloudkms.cryptoKeyVersions.useToSign"},
	"roles/cloudkms.signerVerifier":  {"cloudkms.cryptoKeyVersions.useToSign", "cloudkms.cryptoKeyVersions.useToVerify", "cloudkms.cryptoKeyVersions.viewPublicKey"},
	"roles/cloudkms.publicKeyViewer": {"cloudkms.cryptoKeyVersions.viewPublicKey"},
	"roles/cloudkms.cryptoOperator": {
		"cloudkms.cryptoKeyVersions.useToSign", "cloudkms.cryptoKeyVersions.useToVerify",
		"cloudkms.cryptoKeyVersions.viewPublicKey", "cloudkms.cryptoKeyVersions.useToEncrypt", "cloudkms.cryptoKeyVersions.useToDecrypt",
	},
}

// grants reports whether a grant (a permission, a role name, "*" or a
// roles/owner-like role) includes perm.
func grants(grant, perm string) bool {
	switch grant {
	case perm, "*", "roles/owner", "roles/editor":
		return true
	}
	if strings.HasSuffix(grant, ".*") && strings.HasPrefix(perm, strings.TrimSuffix(grant, "*")) {
		return true
	}
	return slices.Contains(roles[grant], perm)
}

// caller returns the authenticated principal of ctx ("" when identity checks
// are off), or UNAUTHENTICATED when checks are on and the call carries no
// valid credentials.
func (s *Server) caller(ctx context.Context) (string, error) {
	id, _ := ctx.Value(callerKey{}).(callerID)
	if !s.auth.checking() {
		return id.email, nil
	}
	if id.err != nil {
		return "", id.err
	}
	if id.email == "" {
		return "", status.Error(codes.Unauthenticated, "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
	}
	return id.email, nil
}

// authorize checks that the caller holds perm on resource, as Cloud KMS does
// before it looks the resource up (so a missing resource the caller may not
// see is PERMISSION_DENIED, not NOT_FOUND).
func (s *Server) authorize(ctx context.Context, perm, resource string) error {
	if !s.auth.checking() {
		return nil
	}
	who, err := s.caller(ctx)
	if err != nil {
		return err
	}
	if s.allowed(who, perm, resource) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "Permission '%s' denied on resource '%s' (or it may not exist).", perm, resource)
}

// allowed evaluates the caller's grants: Options.Principals (project-wide)
// plus role bindings for "serviceAccount:<email>", "user:<email>",
// allAuthenticatedUsers and allUsers in the IAM policies of the resource and
// its ancestors. Binding conditions are not evaluated (they grant).
func (s *Server) allowed(who, perm, resource string) bool {
	if !s.auth.checking() {
		return true
	}
	if slices.ContainsFunc(s.auth.grantsOf(who), func(g string) bool { return grants(g, perm) }) {
		return true
	}
	members := []string{"allUsers"}
	if who != "" {
		members = append(members, "allAuthenticatedUsers", "serviceAccount:"+who, "user:"+who)
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	for _, res := range ancestry(resource) {
		p, ok := s.st.policies[res]
		if !ok {
			continue
		}
		for _, b := range p.GetBindings() {
			if grants(b.GetRole(), perm) && slices.ContainsFunc(b.GetMembers(), func(m string) bool { return slices.Contains(members, m) }) {
				return true
			}
		}
	}
	return false
}

// ancestry lists resource and its ancestors that can carry IAM policies.
func ancestry(resource string) []string {
	out := []string{resource}
	for _, sep := range []string{"/cryptoKeyVersions/", "/cryptoKeys/"} {
		if i := strings.LastIndex(resource, sep); i >= 0 {
			resource = resource[:i]
			out = append(out, resource)
		}
	}
	return out
}
