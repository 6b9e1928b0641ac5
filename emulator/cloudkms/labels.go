package cloudkms

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxLabels and maxLabelLen are the limits of the service's "Labeling keys"
// page; enforcing them here means a client that would be rejected in
// production is rejected in CI too.
const (
	maxLabels   = 64
	maxLabelLen = 63
)

// validateLabels applies the documented label rules: at most 64 labels; keys
// 1-63 characters starting with a lowercase (or international) letter;
// values 0-63 characters; only lowercase letters, digits, '_' and '-' (and
// international characters) in both.
func validateLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return status.Errorf(codes.InvalidArgument, "too many labels: %d (at most %d are allowed)", len(labels), maxLabels)
	}
	for k, v := range labels {
		if err := checkLabelPart(k, true); err != nil {
			return status.Errorf(codes.InvalidArgument, "invalid label key %q: %v", k, err)
		}
		if err := checkLabelPart(v, false); err != nil {
			return status.Errorf(codes.InvalidArgument, "invalid value %q for label %q: %v", v, k, err)
		}
	}
	return nil
}

func checkLabelPart(s string, isKey bool) error {
	n := utf8.RuneCountInString(s)
	switch {
	case isKey && n == 0:
		return fmt.Errorf("keys must not be empty")
	case n > maxLabelLen:
		return fmt.Errorf("longer than %d characters", maxLabelLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("not valid UTF-8")
	}
	for i, r := range s {
		if i == 0 && isKey && !(unicode.IsLower(r) || (r > unicode.MaxASCII && unicode.IsLetter(r))) {
			return fmt.Errorf("must start with a lowercase letter or an international character")
		}
		ok := r == '_' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') ||
			(r > unicode.MaxASCII && (unicode.IsLetter(r) && !unicode.IsUpper(r) || unicode.IsDigit(r)))
		if !ok {
			return fmt.Errorf("only lowercase letters, digits, '_' and '-' are allowed, found %q", r)
		}
	}
	return nil
}
