package keyvault

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"
)

const msgMissingToken = "AKV10000: Request is missing a Bearer or PoP token."

// resource is the challenge resource and token audience of the vault.
func (v *vault) resource() string {
	if v.managedHSM {
		return ResourceManagedHSM
	}
	return ResourceVault
}

// authenticate checks the bearer token and returns the caller's client ID.
func (s *Server) authenticate(r *http.Request, v *vault) (string, *apiError) {
	h := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(h, " ")
	if h == "" || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", unauthorized(msgMissingToken)
	}
	return s.token.check(strings.TrimSpace(tok), s.opts.TenantID, v.resource())
}

// challenge answers 401 with the WWW-Authenticate header the SDK's
// challenge policy parses: authorization names the emulator's authority and
// tenant, resource the vault kind. Values contain no spaces or '='. A
// Managed HSM answers with an empty body, like the service.
func (s *Server) challenge(w http.ResponseWriter, v *vault, e *apiError) {
	authz := strings.TrimSuffix(s.mainURL, "/") + "/" + s.opts.TenantID
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s", resource="%s"`, authz, v.resource()))
	if v.managedHSM {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	writeError(w, e)
}

// allowed reports whether Roles lets clientID use perm.
func (s *Server) allowed(clientID, perm string) bool {
	if s.opts.Roles == nil || perm == "" {
		return true
	}
	var perms []string
	found := false
	for id, p := range s.opts.Roles {
		if strings.EqualFold(id, clientID) {
			perms, found = p, true
		}
	}
	if !found {
		return true
	}
	for _, p := range perms {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "*" || p == "keys/*" || p == strings.ToLower(perm) {
			return true
		}
	}
	return false
}

// rbacDenied builds the 403 the service returns when role assignments do not
// grant the data action.
func (s *Server) rbacDenied(v *vault, clientID, perm, key string) *apiError {
	action := rbacAction[strings.ToLower(perm)]
	if action == "" {
		action = "Microsoft.KeyVault/vaults/" + perm
	}
	res := "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator/providers/microsoft.keyvault/vaults/" + lower(v.name)
	if v.managedHSM {
		action = strings.Replace(action, "Microsoft.KeyVault/vaults/", "Microsoft.KeyVault/managedHsm/", 1)
		res = "/keys"
	}
	if key != "" {
		res += "/keys/" + lower(key)
	}
	oid := uuid.NewSHA1(uuid.NameSpaceOID, []byte(s.opts.TenantID+"/"+clientID)).String()
	return forbidden(CodeForbiddenByRbac,
		"Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=%s;oid=%s;iss=https://sts.windows.net/%s/\r\nAction: '%s'\r\nResource: '%s'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: %s;location=local\r\n",
		clientID, oid, s.opts.TenantID, action, res, lower(v.name))
}
