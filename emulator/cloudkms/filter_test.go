package cloudkms

import (
	"testing"
)

func TestFilterLanguage(t *testing.T) {
	rec := mapRecord{
		"name": "projects/p/locations/l/keyRings/r/cryptoKeys/Cloud-KMS", "purpose": "ASYMMETRIC_SIGN",
		"create_time": "2026-01-02T03:04:05Z", "labels.n": "1700000000", "labels.s": "beta", "labels.empty": "",
	}
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{"", true},
		{"labels.s = beta", true},
		{`labels.s = "beta"`, true},
		{"labels.s != beta", false},
		{"-labels.s = beta", false},
		{"NOT labels.s = beta", false},
		{"labels.missing != x", true}, // "!=" is NOT "="
		{"labels.missing = x", false},
		{"labels.missing < 5", false}, // absent fields match no comparison
		{"NOT labels.missing < 5", true},
		{"labels.n < 1700000001", true},
		{"labels.n < 999", false}, // numeric, not byte-wise
		{"labels.n >= 1700000000", true},
		{"labels.n => 1700000000", true},
		{"labels.s > alpha", true},
		{"labels.empty:*", true},
		{"labels.empty = \"\"", true},
		{"labels:s", true},
		{"labels:nope", false},
		{"name:cloud", true},
		{"name:kms labels.s = beta", true},
		{"labels.s = x OR labels.s = beta", true},
		{"labels.s = x OR labels.s = y AND labels.n:*", false},
		{"labels.s = beta AND labels.s = x OR labels.n:*", true}, // OR binds tighter: beta AND (x OR n)
		{"(labels.s = beta AND labels.s = x) OR labels.n:*", true},
		{"(labels.s = x AND labels.s = beta) OR labels.missing:*", false},
		{"create_time > 2026-01-01T00:00:00Z", true},
		{`create_time < "2026-01-01T00:00:00Z"`, false},
		{"purpose = ASYMMETRIC_SIGN", true},
		{"purpose != ENCRYPT_DECRYPT", true},
	} {
		f, err := parseFilter(tc.filter, cryptoKeySchema)
		if err != nil {
			t.Errorf("%q: %v", tc.filter, err)
			continue
		}
		if got := f.match(rec); got != tc.want {
			t.Errorf("%q matched = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	for _, f := range []string{
		"labels.s =", "labels.s = \"open", "(labels.s = a", "labels.s = a)", "AND", "state = ENABLED",
		"purpose = SIGN", "create_time < now", "labels = x", "labels:*", "import_only = maybe", "labels.s ~ a",
	} {
		if _, err := parseFilter(f, cryptoKeySchema); err == nil {
			t.Errorf("%q: no error", f)
		}
	}
}

func TestValidateLabels(t *testing.T) {
	long := string(make([]rune, 64))
	for _, tc := range []struct {
		labels map[string]string
		ok     bool
	}{
		{map[string]string{"spire-server-td": "0a1b", "spire-active": "true", "spire-last-update": "1700000000"}, true},
		{map[string]string{"a_b-c": ""}, true},
		{map[string]string{"équipe": "données"}, true},
		{map[string]string{"Team": "x"}, false},
		{map[string]string{"1team": "x"}, false},
		{map[string]string{"": "x"}, false},
		{map[string]string{"team": "X"}, false},
		{map[string]string{"team": "a.b"}, false},
		{map[string]string{"t": long}, false},
	} {
		if err := validateLabels(tc.labels); (err == nil) != tc.ok {
			t.Errorf("validateLabels(%q) = %v, want ok=%v", tc.labels, err, tc.ok)
		}
	}
	many := map[string]string{}
	for i := range 65 {
		many[string(rune('a'+i%26))+string(rune('a'+i/26))] = ""
	}
	if validateLabels(many) == nil {
		t.Error("65 labels accepted")
	}
}
