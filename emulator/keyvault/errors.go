package keyvault

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Error codes the service puts in {"error":{"code"}} (azcore exposes them as
// ResponseError.ErrorCode) and in "innererror" for some 403s and 409s.
const (
	CodeBadParameter                  = "BadParameter"
	CodeUnauthorized                  = "Unauthorized"
	CodeForbidden                     = "Forbidden"
	CodeForbiddenByRbac               = "ForbiddenByRbac"
	CodeKeyDisabled                   = "KeyDisabled"
	CodeKeyNotFound                   = "KeyNotFound"
	CodeConflict                      = "Conflict"
	CodeObjectIsDeletedButRecoverable = "ObjectIsDeletedButRecoverable"
	CodeObjectIsBeingDeleted          = "ObjectIsBeingDeleted"
	CodeVaultRequestTypeLimitReached  = "VaultRequestTypeLimitReached"
	CodeThrottled                     = "Throttled"
	CodeVaultNotFound                 = "VaultNotFound"
	CodeMethodNotAllowed              = "MethodNotAllowed"
	CodeInternalServerError           = "InternalServerError"
	CodeServiceUnavailable            = "ServiceUnavailable"
)

// apiError is a data-plane error as the service returns it.
type apiError struct {
	status int
	code   string
	inner  string
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.msg) }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func badParam(format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, CodeBadParameter, format, args...)
}

func forbidden(inner, format string, args ...any) *apiError {
	e := errf(http.StatusForbidden, CodeForbidden, format, args...)
	e.inner = inner
	return e
}

func keyNotFound(name, version string) *apiError {
	return errf(http.StatusNotFound, CodeKeyNotFound,
		"A key with (name/id) %s/%s was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", name, version)
}

func deletedKeyNotFound(name string) *apiError {
	return errf(http.StatusNotFound, CodeKeyNotFound, "Deleted Key not found: %s", name)
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	InnerError *innerError `json:"innererror,omitempty"`
}

type innerError struct {
	Code string `json:"code"`
}

// writeError writes the service's error body.
func writeError(w http.ResponseWriter, e *apiError) {
	body := errorBody{Error: errorDetail{Code: e.code, Message: e.msg}}
	if e.inner != "" {
		body.Error.InnerError = &innerError{Code: e.inner}
	}
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
