package gcpkms

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Labels and naming written by SPIRE's built-in gcp_kms plugin; keeping them
// identical is what lets kmskeeper adopt its keys.
const (
	cryptoKeyPrefix = "spire-key-"

	labelTrustDomain = "spire-server-td"
	labelServerID    = "spire-server-id"
	labelActive      = "spire-active"
	labelLastUpdate  = "spire-last-update"

	// reservedLabelPrefix is kept for the plugin's own labels.
	reservedLabelPrefix = "spire-"

	// maxCryptoKeyIDLen is Cloud KMS's limit on a CryptoKey ID.
	maxCryptoKeyIDLen = 63
	// longestSPIREKeyID is the longest key ID SPIRE's CA manager asks for
	// ("JWT-Signer-A", "WIT-Signer-A"); the server ID must leave room for it.
	longestSPIREKeyID = "JWT-Signer-A"
)

var (
	// keyRingPattern is a key ring resource name.
	keyRingPattern = regexp.MustCompile(`^projects/([a-z0-9][a-z0-9.:-]{0,99})/locations/([a-zA-Z0-9_-]{1,63})/keyRings/([a-zA-Z0-9_-]{1,63})$`)
	// cryptoKeyIDPattern is what Cloud KMS accepts as a CryptoKey ID.
	cryptoKeyIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,63}$`)
	// serverIDPattern is what SPIRE's gcp_kms accepts as a server ID: it
	// becomes part of a CryptoKey ID and the value of a label.
	serverIDPattern = regexp.MustCompile(`^[a-z0-9_-]+$`)
)

// checkKeyRing checks the key_ring setting.
func checkKeyRing(keyRing string) error {
	if keyRing == "" {
		return fmt.Errorf("key_ring is required: the key ring that holds the keys, projects/<project>/locations/<location>/keyRings/<ring>")
	}
	if !keyRingPattern.MatchString(keyRing) {
		return fmt.Errorf("key_ring %q is not a key ring resource name: want projects/<project>/locations/<location>/keyRings/<ring> (ring and location: letters, digits, '-' and '_')", keyRing)
	}
	return nil
}

// checkServerID checks that the server ID can be part of every CryptoKey ID
// and label value the plugin writes. The message says what the ID breaks and
// what would fit, but not where the ID came from: the caller names that.
func checkServerID(serverID string) error {
	if !serverIDPattern.MatchString(serverID) {
		hint := ""
		if s := suggestServerID(serverID); s != "" {
			hint = fmt.Sprintf(", for example %q", s)
		}
		return fmt.Errorf("a Cloud KMS server ID may hold only lowercase letters, digits, '-' and '_', as it becomes part of key IDs and label values: choose one that does%s", hint)
	}
	if id := cryptoKeyID(serverID, longestSPIREKeyID); len(id) > maxCryptoKeyIDLen {
		return fmt.Errorf("a Cloud KMS server ID may be at most %d characters long, so that CryptoKey IDs such as spire-key-<server ID>-%s fit Cloud KMS's %d; this one has %d: choose a shorter one",
			maxServerIDLen(), longestSPIREKeyID, maxCryptoKeyIDLen, len(serverID))
	}
	return nil
}

// suggestServerID returns an ASCII serverID lowercased with every other
// character Cloud KMS refuses replaced by '-' ("Server.A" gives "server-a"),
// or "" when that still does not fit or keeps no letter or digit.
func suggestServerID(serverID string) string {
	for _, r := range serverID {
		if r > unicode.MaxASCII {
			return ""
		}
	}
	s := strings.Map(func(r rune) rune {
		r = unicode.ToLower(r)
		if r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, serverID)
	if !serverIDPattern.MatchString(s) || len(s) > maxServerIDLen() || strings.Trim(s, "-_") == "" {
		return ""
	}
	return s
}

// maxServerIDLen is the longest server ID whose CryptoKey IDs fit.
func maxServerIDLen() int {
	return maxCryptoKeyIDLen - len(cryptoKeyPrefix) - 1 - len(longestSPIREKeyID)
}

// cryptoKeyID returns the CryptoKey ID of a SPIRE key, as the built-in
// plugin names it.
func cryptoKeyID(serverID, keyID string) string {
	return cryptoKeyPrefix + serverID + "-" + keyID
}

// spireKeyID recovers the SPIRE key ID from a CryptoKey resource name, given
// the server ID its labels name. Server IDs may contain '-', so the label,
// not the name, says where the server ID ends.
func spireKeyID(cryptoKey, serverID string) (string, bool) {
	i := strings.LastIndex(cryptoKey, "/cryptoKeys/")
	if i < 0 || serverID == "" {
		return "", false
	}
	id, ok := strings.CutPrefix(cryptoKey[i+len("/cryptoKeys/"):], cryptoKeyPrefix+serverID+"-")
	if !ok || id == "" {
		return "", false
	}
	return id, true
}

// keyOfVersion returns the CryptoKey name of a version name.
func keyOfVersion(version string) (string, bool) {
	key, _, ok := strings.Cut(version, "/cryptoKeyVersions/")
	return key, ok
}

// isVersionName reports whether ref names a CryptoKeyVersion (this server's
// generations) rather than a CryptoKey (another server's key as a whole).
func isVersionName(ref string) bool {
	return strings.Contains(ref, "/cryptoKeyVersions/")
}

// trustDomainLabel is the spire-server-td value: labels cannot hold '.', so
// the built-in plugin stores the hex SHA-1 of the trust domain name.
func trustDomainLabel(trustDomain string) string {
	sum := sha1.Sum([]byte(trustDomain))
	return hex.EncodeToString(sum[:])
}

// unixLabel formats a time as the spire-last-update label does.
func unixLabel(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// parseUnixLabel parses a spire-last-update label.
func parseUnixLabel(v string) (time.Time, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}
