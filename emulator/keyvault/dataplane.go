package keyvault

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
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

// dataRoutes are the data plane's operations as the REST reference lists
// them, in net/http's pattern syntax. The service matches the path's words
// in any case (clients send both wrapKey and wrapkey), so the patterns hold
// them in lower case and canonicalRoutePath lowers them in the request; key
// names and versions keep their case. Every route also takes a trailing
// slash (azkeys sends GET /keys/{name}/ for the latest version).
var dataRoutes = []struct{ pattern, op string }{
	{"POST /rng", "GetRandomBytes"},
	{"GET /deletedkeys", "ListDeletedKeys"},
	{"GET /deletedkeys/{name}", "GetDeletedKey"},
	{"DELETE /deletedkeys/{name}", "PurgeDeletedKey"},
	{"POST /deletedkeys/{name}/recover", "RecoverDeletedKey"},
	{"GET /keys", "ListKeys"},
	{"POST /keys/restore", "RestoreKey"},
	{"GET /keys/{name}", "GetKey"},
	{"PUT /keys/{name}", "ImportKey"},
	{"PATCH /keys/{name}", "UpdateKey"},
	{"DELETE /keys/{name}", "DeleteKey"},
	{"GET /keys/{name}/versions", "ListKeyVersions"},
	{"GET /keys/{name}/rotationpolicy", "GetKeyRotationPolicy"},
	{"PUT /keys/{name}/rotationpolicy", "UpdateKeyRotationPolicy"},
	{"POST /keys/{name}/create", "CreateKey"},
	{"POST /keys/{name}/rotate", "RotateKey"},
	{"POST /keys/{name}/backup", "BackupKey"},
	{"GET /keys/{name}/{version}", "GetKey"},
	{"PATCH /keys/{name}/{version}", "UpdateKey"},
	{"GET /keys/{name}/{version}/attestation", "GetKeyAttestation"},
}

// cryptoRoutes are the key operations that take an optional version:
// POST /keys/{name}[/{version}]/{word}.
var cryptoRoutes = map[string]string{
	"sign": "Sign", "verify": "Verify", "encrypt": "Encrypt", "decrypt": "Decrypt",
	"wrapkey": "WrapKey", "unwrapkey": "UnwrapKey", "release": "Release",
}

func methodNotAllowed(m string) *apiError {
	return errf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "The requested resource does not support http method '%s'.", m)
}

// dataRequest carries a data-plane request's vault into the mux's handlers
// and the log label out of them.
type dataRequest struct {
	v     *vault
	label string
}

type dataRequestKey struct{}

// routeWord is a literal word of a route: method, collection, the path's
// length in segments and the word's position.
type routeWord struct {
	method, coll string
	n, pos       int
	word         string
}

// dataMux routes the data plane with net/http's pattern mux. Requests that
// match no route get the service's answers: 405 MethodNotAllowed on a known
// resource, 400 BadParameter on an unknown path.
type dataMux struct {
	mux   *http.ServeMux
	words map[routeWord]bool
}

func (s *Server) newDataMux() *dataMux {
	d := &dataMux{mux: http.NewServeMux(), words: map[routeWord]bool{}}
	add := func(pattern, op string) {
		d.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			dr := r.Context().Value(dataRequestKey{}).(*dataRequest)
			if r.Method == http.MethodHead { // GET's patterns also match HEAD; the service does not
				dr.label = "bad route"
				writeError(w, notRouted(r.Method, r.URL.Path))
				return
			}
			dr.label = s.serveOp(w, r, dr.v, route{op: op, name: r.PathValue("name"), version: r.PathValue("version")})
		})
		method, path, _ := strings.Cut(pattern, " ")
		segs := splitPath(path)
		for i, seg := range segs[1:] {
			if !strings.HasPrefix(seg, "{") {
				d.words[routeWord{method, segs[0], len(segs), i + 1, seg}] = true
			}
		}
	}
	for _, rt := range dataRoutes {
		add(rt.pattern, rt.op)
	}
	for word, op := range cryptoRoutes {
		add("POST /keys/{name}/"+word, op)
		add("POST /keys/{name}/{version}/"+word, op)
	}
	d.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		r.Context().Value(dataRequestKey{}).(*dataRequest).label = "bad route"
		writeError(w, notRouted(r.Method, r.URL.Path))
	})
	return d
}

// notRouted is the service's answer to a request no route takes: 405 on
// the resources it knows (a key, its versions and commands, a deleted key),
// 400 on any other path.
func notRouted(method, path string) *apiError {
	segs := splitPath(path)
	switch n := len(segs); {
	case segs[0] == "keys" && n <= 4, segs[0] == "deletedkeys" && n <= 3:
		return methodNotAllowed(method)
	}
	return badParam("The request URI %s is not valid.", path)
}

// canonicalRoutePath is the path the mux routes: the route's words in
// lower case (key names and versions as sent), one trailing slash dropped.
// ok is false for a path the mux would not take as it is (an empty, "." or
// ".." segment), which no route matches.
func (d *dataMux) canonicalRoutePath(method string, segs []string) (path string, ok bool) {
	if n := len(segs); n > 1 && segs[n-1] == "" {
		segs = segs[:n-1]
	}
	out := make([]string, len(segs))
	out[0] = strings.ToLower(segs[0])
	for i, seg := range segs[1:] {
		if seg == "" || seg == "." || seg == ".." {
			return "/" + strings.Join(segs, "/"), false
		}
		if l := strings.ToLower(seg); d.words[routeWord{method, out[0], len(segs), i + 1, l}] {
			seg = l
		}
		out[i+1] = seg
	}
	return "/" + strings.Join(out, "/"), true
}

// routeData routes a data-plane request of vault v and returns its log
// label.
func (s *Server) routeData(w http.ResponseWriter, r *http.Request, v *vault, segs []string) string {
	switch coll := strings.ToLower(segs[0]); coll {
	case "keys", "deletedkeys", "rng":
	default:
		writeError(w, badParam("This emulator serves the keys API only; %s is not available.", coll))
		return "bad route"
	}
	path, ok := s.dataMux.canonicalRoutePath(r.Method, segs)
	if !ok {
		writeError(w, badParam("The request URI %s is not valid.", path))
		return "bad route"
	}
	dr := &dataRequest{v: v}
	rr := r.WithContext(context.WithValue(r.Context(), dataRequestKey{}, dr))
	u := *r.URL
	u.Path, u.RawPath = path, ""
	rr.URL = &u
	s.dataMux.mux.ServeHTTP(w, rr)
	return dr.label
}

// latestAPIVersion is the newest stable api-version of the keys API, which
// the service names when it refuses another (and azkeys v1.5 sends).
const latestAPIVersion = "2025-07-01"

// vaultAPIVersions are the keys API versions a vault accepts, as published
// (the REST API specifications' data-plane versions), from the 7.x
// generation on: 2015-06-01 and 2016-10-01, which the service still takes,
// answer in shapes this emulator does not model, so it refuses them.
var vaultAPIVersions = []string{
	"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", latestAPIVersion,
	"7.0-preview", "7.1-preview", "7.2-preview", "7.3-preview", "7.4-preview.1", "7.5-preview.1",
	"7.6-preview.1", "7.6-preview.2", "2025-06-01-preview", "2025-07-01-preview", "2026-01-01-preview",
}

// managedHSMAPIVersions are those a Managed HSM accepts: from 7.2, when
// Managed HSM appeared, and lagging behind vaults on the newest preview.
var managedHSMAPIVersions = []string{
	"7.2", "7.3", "7.4", "7.5", "7.6", latestAPIVersion,
	"7.2-preview", "7.3-preview", "7.4-preview.1", "7.5-preview.1",
	"7.6-preview.1", "7.6-preview.2", "2025-06-01-preview", "2025-07-01-preview",
}

// apiVersionOK reports whether the service (a vault, or a Managed HSM)
// accepts api-version v.
func apiVersionOK(v string, managedHSM bool) bool {
	if managedHSM {
		return slices.Contains(managedHSMAPIVersions, strings.ToLower(v))
	}
	return slices.Contains(vaultAPIVersions, strings.ToLower(v))
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

// serveData answers a data-plane request: the service's headers, then the
// route (routeData).
func (s *Server) serveData(w http.ResponseWriter, r *http.Request, v *vault, segs []string) string {
	w.Header().Set("x-ms-request-id", uuid.NewString())
	w.Header().Set("x-ms-keyvault-service-version", "1.9.2800.1")
	w.Header().Set("x-ms-keyvault-region", "local")
	if v.managedHSM {
		w.Header().Set("x-ms-server-latency", "1")
	}
	return s.routeData(w, r, v, segs)
}

// serveOp runs a routed data-plane request through authentication,
// permission, api-version, fault and throttling checks, then the operation.
func (s *Server) serveOp(w http.ResponseWriter, r *http.Request, v *vault, rt route) string {
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
	} else if !apiVersionOK(av, v.managedHSM) {
		writeError(w, badParam("The specified version (%s) is not recognized. Consider using the latest supported version (%s).", av, latestAPIVersion))
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
			if s.opts.ThrottleRetryAfter {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			}
			e := errf(http.StatusTooManyRequests, CodeThrottled,
				"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached")
			e.inner = CodeVaultRequestTypeLimitReached
			writeError(w, e)
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
