package keyvault

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// route is a parsed data-plane request.
type route struct {
	op      string // operation name, as counted and matched by faults
	name    string // key name, if any
	version string // key version, "" = latest
	crypto  string // sign, verify, encrypt, decrypt, wrapkey, unwrapkey
}

// Permissions, as Roles lists them; each operation needs one.
var opPermission = map[string]string{
	"CreateKey": "keys/create", "ImportKey": "keys/import", "GetKey": "keys/get",
	"UpdateKey": "keys/update", "DeleteKey": "keys/delete", "ListKeys": "keys/list",
	"ListKeyVersions": "keys/list", "GetDeletedKey": "keys/get", "ListDeletedKeys": "keys/list",
	"RecoverDeletedKey": "keys/recover", "PurgeDeletedKey": "keys/purge",
	"Sign": "keys/sign", "Verify": "keys/verify", "Encrypt": "keys/encrypt",
	"Decrypt": "keys/decrypt", "WrapKey": "keys/wrapKey", "UnwrapKey": "keys/unwrapKey",
	"RotateKey": "keys/rotate", "GetKeyRotationPolicy": "keys/getrotationpolicy",
	"UpdateKeyRotationPolicy": "keys/setrotationpolicy", "BackupKey": "keys/backup",
	"RestoreKey": "keys/restore", "Release": "keys/release", "GetKeyAttestation": "keys/get",
	"GetRandomBytes": "rng",
}

// rbacAction names the RBAC data action in ForbiddenByRbac messages.
var rbacAction = map[string]string{
	"keys/create": "Microsoft.KeyVault/vaults/keys/create/action", "keys/import": "Microsoft.KeyVault/vaults/keys/import/action",
	"keys/get": "Microsoft.KeyVault/vaults/keys/read", "keys/list": "Microsoft.KeyVault/vaults/keys/read",
	"keys/update": "Microsoft.KeyVault/vaults/keys/write", "keys/delete": "Microsoft.KeyVault/vaults/keys/delete",
	"keys/recover": "Microsoft.KeyVault/vaults/deletedkeys/recover/action", "keys/purge": "Microsoft.KeyVault/vaults/deletedkeys/delete",
	"keys/sign": "Microsoft.KeyVault/vaults/keys/sign/action", "keys/verify": "Microsoft.KeyVault/vaults/keys/verify/action",
	"keys/encrypt": "Microsoft.KeyVault/vaults/keys/encrypt/action", "keys/decrypt": "Microsoft.KeyVault/vaults/keys/decrypt/action",
	"keys/wrapkey": "Microsoft.KeyVault/vaults/keys/wrap/action", "keys/unwrapkey": "Microsoft.KeyVault/vaults/keys/unwrap/action",
	"keys/rotate": "Microsoft.KeyVault/vaults/keys/rotate/action", "keys/backup": "Microsoft.KeyVault/vaults/keys/backup/action",
	"keys/restore": "Microsoft.KeyVault/vaults/keys/restore/action", "keys/release": "Microsoft.KeyVault/vaults/keys/release/action",
	"keys/getrotationpolicy": "Microsoft.KeyVault/vaults/keys/rotationpolicy/read", "keys/setrotationpolicy": "Microsoft.KeyVault/vaults/keys/rotationpolicy/write",
	"rng": "Microsoft.KeyVault/vaults/rng/action",
}

// keyCommands are the POST /keys/{name}/{x} segments that are not versions.
var keyCommands = map[string]string{
	"create": "CreateKey", "rotate": "RotateKey", "backup": "BackupKey",
	"sign": "Sign", "verify": "Verify", "encrypt": "Encrypt", "decrypt": "Decrypt",
	"wrapkey": "WrapKey", "unwrapkey": "UnwrapKey", "release": "Release",
}

func methodNotAllowed(m string) *apiError {
	return errf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "The requested resource does not support http method '%s'.", m)
}

// parseRoute maps method and path to an operation. Path words are
// case-insensitive (clients send both wrapKey and wrapkey); names keep case.
func parseRoute(method string, segs []string) (route, *apiError) {
	if n := len(segs); n > 1 && segs[n-1] == "" {
		segs = segs[:n-1] // /keys/{name}/ is the latest version
	}
	coll := strings.ToLower(segs[0])
	n := len(segs)
	switch coll {
	case "rng":
		if n == 1 && method == http.MethodPost {
			return route{op: "GetRandomBytes"}, nil
		}
	case "deletedkeys":
		switch {
		case n == 1 && method == http.MethodGet:
			return route{op: "ListDeletedKeys"}, nil
		case n == 2 && method == http.MethodGet:
			return route{op: "GetDeletedKey", name: segs[1]}, nil
		case n == 2 && method == http.MethodDelete:
			return route{op: "PurgeDeletedKey", name: segs[1]}, nil
		case n == 3 && strings.EqualFold(segs[2], "recover") && method == http.MethodPost:
			return route{op: "RecoverDeletedKey", name: segs[1]}, nil
		case n <= 3:
			return route{}, methodNotAllowed(method)
		}
	case "keys":
		switch n {
		case 1:
			if method == http.MethodGet {
				return route{op: "ListKeys"}, nil
			}
			return route{}, methodNotAllowed(method)
		case 2:
			name := segs[1]
			switch method {
			case http.MethodGet:
				return route{op: "GetKey", name: name}, nil
			case http.MethodPut:
				return route{op: "ImportKey", name: name}, nil
			case http.MethodPatch:
				return route{op: "UpdateKey", name: name}, nil
			case http.MethodDelete:
				return route{op: "DeleteKey", name: name}, nil
			case http.MethodPost:
				if strings.EqualFold(name, "restore") {
					return route{op: "RestoreKey"}, nil
				}
			}
			return route{}, methodNotAllowed(method)
		case 3:
			name, x := segs[1], strings.ToLower(segs[2])
			switch {
			case x == "versions" && method == http.MethodGet:
				return route{op: "ListKeyVersions", name: name}, nil
			case x == "rotationpolicy" && method == http.MethodGet:
				return route{op: "GetKeyRotationPolicy", name: name}, nil
			case x == "rotationpolicy" && method == http.MethodPut:
				return route{op: "UpdateKeyRotationPolicy", name: name}, nil
			case method == http.MethodPost:
				if op, ok := keyCommands[x]; ok {
					return route{op: op, name: name, crypto: x}, nil
				}
			case method == http.MethodGet:
				return route{op: "GetKey", name: name, version: segs[2]}, nil
			case method == http.MethodPatch:
				return route{op: "UpdateKey", name: name, version: segs[2]}, nil
			}
			return route{}, methodNotAllowed(method)
		case 4:
			name, ver, x := segs[1], segs[2], strings.ToLower(segs[3])
			if x == "attestation" && method == http.MethodGet {
				return route{op: "GetKeyAttestation", name: name, version: ver}, nil
			}
			if op, ok := keyCommands[x]; ok && method == http.MethodPost && op != "CreateKey" && op != "RotateKey" && op != "BackupKey" {
				return route{op: op, name: name, version: ver, crypto: x}, nil
			}
			return route{}, methodNotAllowed(method)
		}
	default:
		return route{}, badParam("This emulator serves the keys API only; %s is not available.", coll)
	}
	return route{}, badParam("The request URI /%s is not valid.", strings.Join(segs, "/"))
}

// apiVersionOK accepts the versions azkeys has sent, 7.4 through 2025-07-01
// and later dates, including previews.
func apiVersionOK(v string) bool {
	if strings.HasPrefix(v, "7.") {
		minor, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(v, "7."), "-", 2)[0])
		return err == nil && minor >= 4
	}
	if len(v) >= 10 {
		if t, err := time.Parse("2006-01-02", v[:10]); err == nil {
			return !t.Before(time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC))
		}
	}
	return false
}

// call is one authenticated data-plane request.
type call struct {
	ctx      context.Context
	v        *vault
	rt       route
	body     []byte
	query    url.Values
	base     string // https://host[:port], no trailing slash
	now      time.Time
	clientID string
}

// serveData runs a data-plane request through authentication, permission,
// api-version, fault and throttling checks, then the operation.
func (s *Server) serveData(w http.ResponseWriter, r *http.Request, v *vault, segs []string) string {
	w.Header().Set("x-ms-request-id", uuid.NewString())
	w.Header().Set("x-ms-keyvault-service-version", "1.9.2800.1")
	w.Header().Set("x-ms-keyvault-region", "local")
	if v.managedHSM {
		w.Header().Set("x-ms-server-latency", "1")
	}
	rt, aerr := parseRoute(r.Method, segs)
	if aerr != nil {
		writeError(w, aerr)
		return "bad route"
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		writeError(w, badParam("Cannot read the request body: %v", err))
		return rt.op
	}

	clientID, aerr := s.authenticate(r, v)
	if aerr != nil {
		s.challenge(w, v, aerr)
		if aerr.msg == msgMissingToken {
			s.counts.add(lower(v.name), "Challenge")
			return "Challenge"
		}
		return rt.op + " unauthorized"
	}
	s.counts.add(lower(v.name), rt.op)

	if perm := opPermission[rt.op]; !s.allowed(clientID, perm) {
		writeError(w, s.rbacDenied(v, clientID, perm, rt.name))
		return rt.op + " forbidden"
	}
	if av := r.URL.Query().Get("api-version"); av == "" {
		writeError(w, badParam("The 'api-version' query parameter is required."))
		return rt.op
	} else if !apiVersionOK(av) {
		writeError(w, badParam("The specified version (%s) is not recognized. Consider using the latest supported version (2025-07-01).", av))
		return rt.op
	}

	var malform Malform
	if f, ok := s.faults.match(v.name, rt.op); ok {
		malform = f.Malform
		if f.Latency > 0 {
			t := time.NewTimer(time.Duration(f.Latency))
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return rt.op + " cancelled"
			}
		}
		if f.Drop {
			panic(http.ErrAbortHandler) // closes the connection (HTTP/1) or resets the stream (HTTP/2)
		}
		if f.Status != 0 {
			writeFault(w, f)
			return rt.op + " fault"
		}
	}

	now := s.clock.Now()
	if s.throttleOn.Load() && !v.managedHSM {
		if ok, wait := v.throttle.admit(now, v.classify(rt, body)); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			writeError(w, errf(http.StatusTooManyRequests, CodeThrottled,
				"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"))
			return rt.op + " throttled"
		}
	}

	c := &call{ctx: r.Context(), v: v, rt: rt, body: body, query: r.URL.Query(), base: "https://" + r.Host, now: now, clientID: clientID}
	status, out, mutated, aerr := s.dispatch(c)
	if mutated {
		if err := s.persist(); err != nil {
			s.logf("persist: %v", err)
		}
	}
	if aerr != nil {
		writeError(w, aerr)
		return rt.op
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return rt.op
	}
	if malform != "" {
		out = damage(malform, out, body)
	}
	writeJSON(w, status, out)
	return rt.op
}

// writeFault answers with an injected fault's status and the service's
// error body for it.
func writeFault(w http.ResponseWriter, f Fault) {
	code, msg := f.Code, f.Message
	if code == "" {
		switch f.Status {
		case http.StatusTooManyRequests:
			code = CodeThrottled
		case http.StatusServiceUnavailable:
			code = CodeServiceUnavailable
		case http.StatusInternalServerError:
			code = CodeInternalServerError
		default:
			code = http.StatusText(f.Status)
			code = strings.ReplaceAll(code, " ", "")
		}
	}
	if msg == "" {
		switch f.Status {
		case http.StatusTooManyRequests:
			msg = "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"
		default:
			msg = fmt.Sprintf("Injected fault: %d %s.", f.Status, http.StatusText(f.Status))
		}
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(time.Duration(f.RetryAfter).Seconds()))))
	}
	writeError(w, errf(f.Status, code, "%s", msg))
}

// classify finds the throttling class of a request from the key it touches.
func (v *vault) classify(rt route, body []byte) keyClass {
	switch rt.op {
	case "CreateKey", "ImportKey":
		kty, bits := peekKeyType(body)
		return keyClass{create: true, hsm: v.managedHSM || strings.HasSuffix(kty, "-HSM"), rsa: strings.HasPrefix(kty, "RSA"), bits: bits}
	case "RestoreKey":
		return keyClass{create: true, hsm: v.managedHSM}
	}
	if rt.name == "" {
		return keyClass{}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	k := v.keys[lower(rt.name)]
	if k == nil {
		return keyClass{}
	}
	kv := k.Versions[k.Latest]
	if rt.version != "" && k.Versions[lower(rt.version)] != nil {
		kv = k.Versions[lower(rt.version)]
	}
	c := kv.class()
	c.create = rt.op == "RotateKey"
	return c
}
