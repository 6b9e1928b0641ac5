package cloudkms

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// iamService implements google.iam.v1.IAMPolicy for key rings and CryptoKeys,
// the interface kms.KeyManagementClient.ResourceIAM's handle calls on the
// same connection.
type iamService struct {
	iampb.UnimplementedIAMPolicyServer
	s *Server
}

// iamResource checks that resource is a key ring or a CryptoKey name and
// returns the permission prefix for it ("cloudkms.keyRings" or
// "cloudkms.cryptoKeys").
func iamResource(resource string) (string, error) {
	if _, err := parseCryptoKeyName(resource); err == nil {
		return "cloudkms.cryptoKeys", nil
	}
	if err := parseKeyRingName(resource); err == nil {
		return "cloudkms.keyRings", nil
	}
	return "", status.Errorf(codes.InvalidArgument, "Resource name [%s] is not a KeyRing or CryptoKey name: IAM policies are set on key rings and keys.", resource)
}

// existsLocked reports whether the key ring or CryptoKey exists.
func (s *Server) existsLocked(resource string) bool {
	if _, ok := s.st.keys[resource]; ok {
		return true
	}
	_, ok := s.st.rings[resource]
	return ok
}

func (i *iamService) GetIamPolicy(ctx context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	kind, err := iamResource(req.GetResource())
	if err != nil {
		return nil, err
	}
	if err := i.s.authorize(ctx, kind+".getIamPolicy", req.GetResource()); err != nil {
		return nil, err
	}
	v := req.GetOptions().GetRequestedPolicyVersion()
	if v != 0 && v != 1 && v != 3 {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid requested_policy_version %d: it must be 0, 1 or 3.", v)
	}
	st := i.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if !i.s.existsLocked(req.GetResource()) {
		return nil, notFoundResource(req.GetResource())
	}
	p := st.policy(req.GetResource())
	if hasConditions(p) && v < 3 {
		return nil, status.Errorf(codes.InvalidArgument, "The policy of %s has conditional role bindings: request policy version 3.", req.GetResource())
	}
	return p, nil
}

func (i *iamService) SetIamPolicy(ctx context.Context, req *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	kind, err := iamResource(req.GetResource())
	if err != nil {
		return nil, err
	}
	if err := i.s.authorize(ctx, kind+".setIamPolicy", req.GetResource()); err != nil {
		return nil, err
	}
	in := req.GetPolicy()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "The policy field is required.")
	}
	if err := validatePolicy(in); err != nil {
		return nil, err
	}
	if err := i.s.checkMembersExist(in); err != nil {
		return nil, err
	}
	st := i.s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if !i.s.existsLocked(req.GetResource()) {
		return nil, notFoundResource(req.GetResource())
	}
	cur := st.policy(req.GetResource())
	if len(in.GetEtag()) > 0 && string(in.GetEtag()) != string(cur.GetEtag()) {
		return nil, status.Error(codes.Aborted, "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.")
	}
	next := proto.Clone(cur).(*iampb.Policy)
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		paths = []string{"bindings", "etag", "version"}
	}
	for _, p := range paths {
		switch p {
		case "bindings":
			next.Bindings = in.GetBindings()
		case "audit_configs", "auditConfigs":
			next.AuditConfigs = in.GetAuditConfigs()
		case "etag":
		case "version":
		default:
			return nil, status.Errorf(codes.InvalidArgument, "Invalid update_mask path %q.", p)
		}
	}
	next.Version = max(in.GetVersion(), 1)
	if hasConditions(next) {
		next.Version = 3
	}
	st.policyRev++
	next.Etag = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, uint32(i.s.clock.Now().Unix())), st.policyRev)
	st.policies[req.GetResource()] = next
	i.s.persistLocked()
	return proto.Clone(next).(*iampb.Policy), nil
}

func (i *iamService) TestIamPermissions(ctx context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	if _, err := iamResource(req.GetResource()); err != nil {
		return nil, err
	}
	caller, err := i.s.caller(ctx)
	if err != nil {
		return nil, err
	}
	var granted []string
	for _, p := range req.GetPermissions() {
		if i.s.allowed(caller, p, req.GetResource()) {
			granted = append(granted, p)
		}
	}
	return &iampb.TestIamPermissionsResponse{Permissions: granted}, nil
}

func notFoundResource(resource string) error {
	if _, err := parseCryptoKeyName(resource); err == nil {
		return notFound("CryptoKey", resource)
	}
	return notFound("KeyRing", resource)
}

func hasConditions(p *iampb.Policy) bool {
	return slices.ContainsFunc(p.GetBindings(), func(b *iampb.Binding) bool { return b.GetCondition() != nil })
}

// validatePolicy applies the checks the IAM service makes on SetIamPolicy.
func validatePolicy(p *iampb.Policy) error {
	switch v := p.GetVersion(); {
	case v != 0 && v != 1 && v != 3:
		return status.Errorf(codes.InvalidArgument, "Invalid policy version %d: it must be 1 or 3.", v)
	case hasConditions(p) && v != 3:
		return status.Error(codes.InvalidArgument, "Policies with conditional role bindings must use version 3.")
	}
	for _, b := range p.GetBindings() {
		if !strings.HasPrefix(b.GetRole(), "roles/") && !strings.HasPrefix(b.GetRole(), "projects/") && !strings.HasPrefix(b.GetRole(), "organizations/") {
			return status.Errorf(codes.InvalidArgument, "Role %q is not a valid role name.", b.GetRole())
		}
		if len(b.GetMembers()) == 0 {
			return status.Errorf(codes.InvalidArgument, "The binding for role %s has no members.", b.GetRole())
		}
		for _, m := range b.GetMembers() {
			if !validMember(m) {
				// The service's words (its type prefixes are case-sensitive).
				return status.Errorf(codes.InvalidArgument, "The member %s is of an unknown type. Please set a valid type prefix for the member.", m)
			}
		}
	}
	return nil
}

func validMember(m string) bool {
	switch m {
	case "allUsers", "allAuthenticatedUsers":
		return true
	}
	for _, p := range []string{"user:", "serviceAccount:", "group:", "domain:", "principal://", "principalSet://", "deleted:", "projectOwner:", "projectEditor:", "projectViewer:"} {
		if strings.HasPrefix(m, p) && len(m) > len(p) {
			return true
		}
	}
	return false
}

// checkMembersExist refuses, as the service does, a policy naming a
// service account that does not exist. The emulator's directory of service
// accounts is the accounts it issued and the principals it was given, so
// the check applies only while identity checks are on (Options.Principals
// set) and Options.AllowUnknownMembers is off.
func (s *Server) checkMembersExist(p *iampb.Policy) error {
	if s.opts.AllowUnknownMembers || !s.auth.checking() {
		return nil
	}
	for _, b := range p.GetBindings() {
		for _, m := range b.GetMembers() {
			if email, ok := strings.CutPrefix(m, "serviceAccount:"); ok && !s.auth.knows(email) {
				return status.Errorf(codes.InvalidArgument, "Service account %s does not exist.", email)
			}
		}
	}
	return nil
}
