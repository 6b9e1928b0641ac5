package gcpkms

import (
	"fmt"
	"os"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/protobuf/encoding/protojson"
)

// signerVerifierRole is the role the default policy grants the plugin's own
// service account on every key it creates, as the built-in plugin does.
const signerVerifierRole = "roles/cloudkms.signerVerifier"

// policyVersion is the IAM policy version key policies are written in
// (version 3 allows conditional bindings).
const policyVersion = 3

// readPolicyFile reads and checks key_policy_file: an IAM policy in JSON
// (the format of `gcloud kms keys get-iam-policy --format=json`), version 3.
func readPolicyFile(path string) (*iampb.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key_policy_file %s cannot be read: %w", path, err)
	}
	return parsePolicy(path, data)
}

// parsePolicy parses and checks an IAM policy document.
func parsePolicy(path string, data []byte) (*iampb.Policy, error) {
	p := &iampb.Policy{}
	if err := protojson.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("key_policy_file %s is not an IAM policy in JSON ({\"bindings\": [{\"role\": ..., \"members\": [...]}], \"version\": 3}): %w", path, err)
	}
	switch p.GetVersion() {
	case 0:
		p.Version = policyVersion
	case policyVersion:
	default:
		return nil, fmt.Errorf("key_policy_file %s has version %d; key policies must be IAM policy version 3", path, p.GetVersion())
	}
	if len(p.GetBindings()) == 0 {
		return nil, fmt.Errorf("key_policy_file %s has no bindings: the created keys would get an empty policy; list at least one role and its members", path)
	}
	for i, b := range p.GetBindings() {
		if !strings.HasPrefix(b.GetRole(), "roles/") && !strings.HasPrefix(b.GetRole(), "projects/") && !strings.HasPrefix(b.GetRole(), "organizations/") {
			return nil, fmt.Errorf("key_policy_file %s: binding %d has role %q; want a role name such as roles/cloudkms.signerVerifier (or a custom role projects/<p>/roles/<r>)", path, i+1, b.GetRole())
		}
		if len(b.GetMembers()) == 0 {
			return nil, fmt.Errorf("key_policy_file %s: binding %d (%s) has no members", path, i+1, b.GetRole())
		}
		for _, m := range b.GetMembers() {
			if !validMember(m) {
				return nil, fmt.Errorf("key_policy_file %s: binding %d (%s) has member %q; want allUsers, allAuthenticatedUsers or <type>:<id> such as serviceAccount:spire@project.iam.gserviceaccount.com", path, i+1, b.GetRole(), m)
			}
			if kind, _, _ := strings.Cut(m, ":"); miscased(kind) != "" {
				return nil, fmt.Errorf("key_policy_file %s: binding %d (%s) has member %q, whose type Cloud KMS would refuse: member types are case-sensitive; write %s:", path, i+1, b.GetRole(), m, miscased(kind))
			}
		}
	}
	// The etag of a policy read elsewhere belongs to another resource.
	p.Etag = nil
	return p, nil
}

// validMember reports whether m looks like an IAM principal.
func validMember(m string) bool {
	if m == "allUsers" || m == "allAuthenticatedUsers" {
		return true
	}
	kind, id, ok := strings.Cut(m, ":")
	return ok && kind != "" && id != "" && !strings.ContainsAny(m, " \t\n")
}

// memberTypes are the IAM member types, spelled as IAM requires.
var memberTypes = []string{"user", "serviceAccount", "group", "domain", "principal", "principalSet", "deleted", "projectOwner", "projectEditor", "projectViewer"}

// miscased returns the correct spelling of kind when kind is an IAM member
// type written in the wrong case (serviceaccount), and "" otherwise: IAM
// refuses such a member when the policy is set, after the key was created.
// Types it does not know are left for Cloud KMS to judge.
func miscased(kind string) string {
	for _, t := range memberTypes {
		if kind != t && strings.EqualFold(kind, t) {
			return t
		}
	}
	return ""
}

// defaultPolicy binds the plugin's service account to signerVerifier.
func defaultPolicy(email string) *iampb.Policy {
	return &iampb.Policy{
		Version:  policyVersion,
		Bindings: []*iampb.Binding{{Role: signerVerifierRole, Members: []string{"serviceAccount:" + email}}},
	}
}
