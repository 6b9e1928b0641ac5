package gcpkms

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
)

// permissions names the IAM permission each Cloud KMS method needs, so that
// a denial tells the operator exactly what to grant.
var permissions = map[string]string{
	"ListCryptoKeys":          "cloudkms.cryptoKeys.list",
	"GetCryptoKey":            "cloudkms.cryptoKeys.get",
	"CreateCryptoKey":         "cloudkms.cryptoKeys.create",
	"UpdateCryptoKey":         "cloudkms.cryptoKeys.update",
	"SetIamPolicy":            "cloudkms.cryptoKeys.setIamPolicy",
	"ListCryptoKeyVersions":   "cloudkms.cryptoKeyVersions.list",
	"GetCryptoKeyVersion":     "cloudkms.cryptoKeyVersions.get",
	"CreateCryptoKeyVersion":  "cloudkms.cryptoKeyVersions.create",
	"DestroyCryptoKeyVersion": "cloudkms.cryptoKeyVersions.destroy",
	"GetPublicKey":            "cloudkms.cryptoKeyVersions.viewPublicKey",
	"AsymmetricSign":          "cloudkms.cryptoKeyVersions.useToSign",
}

// cloudError turns an error of a Cloud KMS call into one whose gRPC code
// keeps the cause (DESIGN rule 8) and whose message names the method, the
// resource and what to do. The cloud's own message is kept at the end.
func cloudError(err error, method, resource string) error {
	if err == nil {
		return nil
	}
	code := status.Code(err)
	if code == codes.Unknown {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			code = codes.DeadlineExceeded
		case errors.Is(err, context.Canceled):
			code = codes.Canceled
		}
	}
	switch code {
	case codes.PermissionDenied:
		if project, ok := serviceDisabled(err, resource); ok {
			return engine.Errorf(codes.PermissionDenied, "Cloud KMS %s on %s was refused because the Cloud KMS API is not enabled in project %s: enable the Cloud KMS API in project %s (gcloud services enable cloudkms.googleapis.com --project %s) and allow a few minutes for it to take effect: %w", method, resource, project, project, project, err)
		}
		return engine.Errorf(codes.PermissionDenied, "Cloud KMS %s on %s was denied: grant the plugin's identity the permission %s (docs/gcp.md lists the roles): %w", method, resource, permissions[method], err)
	case codes.Unauthenticated:
		return engine.Errorf(codes.Unauthenticated, "Cloud KMS %s on %s: the credentials were refused; check service_account_file or the Application Default Credentials: %w", method, resource, err)
	case codes.NotFound:
		return engine.Errorf(codes.NotFound, "Cloud KMS %s: %s does not exist; the plugin creates keys, not key rings: %w", method, resource, err)
	case codes.ResourceExhausted:
		return engine.Errorf(codes.ResourceExhausted, "Cloud KMS %s on %s: quota still exceeded when the call's time budget ran out: %w", method, resource, err)
	case codes.Internal:
		// An error inside Cloud KMS, not in kmskeeper: Unavailable, like
		// other failures of the service that SPIRE's next attempt may not
		// meet (rule 8 keeps Internal for kmskeeper's own bugs).
		return engine.Errorf(codes.Unavailable, "Cloud KMS %s on %s failed with an error inside Cloud KMS (INTERNAL), after a few retries if the call is safe to repeat; creations are not retried, as one may have taken effect: %w", method, resource, err)
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Unknown:
		if strings.HasPrefix(method, "Create") {
			return engine.Errorf(codes.Unavailable, "Cloud KMS %s on %s failed (unreachable or failing) and was not retried, as a creation may have taken effect; a key it left is resumed by the next GenerateKey or retired by cleanup: %w", method, resource, err)
		}
		return engine.Errorf(codes.Unavailable, "Cloud KMS %s on %s failed until the call's time budget ran out (unreachable or failing, retried): %w", method, resource, err)
	case codes.Canceled:
		return engine.Errorf(codes.Canceled, "Cloud KMS %s on %s: cancelled: %w", method, resource, err)
	case codes.FailedPrecondition:
		return engine.Errorf(codes.FailedPrecondition, "Cloud KMS %s on %s: the key is not in a state that allows it: %w", method, resource, err)
	case codes.InvalidArgument, codes.OutOfRange:
		return engine.Errorf(codes.InvalidArgument, "Cloud KMS %s on %s refused the request as invalid: %w", method, resource, err)
	case codes.AlreadyExists:
		return engine.Errorf(codes.AlreadyExists, "Cloud KMS %s: %s already exists: %w", method, resource, err)
	}
	return engine.Errorf(codes.Unavailable, "Cloud KMS %s on %s failed: %w", method, resource, err)
}

// serviceDisabled reports whether a PERMISSION_DENIED says that the Cloud
// KMS API is not enabled in the project (ErrorInfo reason SERVICE_DISABLED),
// and names that project: the ErrorInfo's consumer, else the resource's.
func serviceDisabled(err error, resource string) (string, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return "", false
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetReason() != "SERVICE_DISABLED" {
			continue
		}
		if p, ok := strings.CutPrefix(info.GetMetadata()["consumer"], "projects/"); ok && p != "" {
			return p, true
		}
		return projectOf(resource), true
	}
	return "", false
}

// projectOf returns the project of a Cloud KMS resource name.
func projectOf(resource string) string {
	rest, _ := strings.CutPrefix(resource, "projects/")
	p, _, _ := strings.Cut(rest, "/")
	return p
}
