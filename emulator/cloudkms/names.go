package cloudkms

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// idPattern is the rule the service documents for key ring and CryptoKey IDs
// (kmspb.CreateCryptoKeyRequest.crypto_key_id).
var idPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,63}$`)

// validID reports whether id is a valid key ring or CryptoKey ID.
func validID(id string) bool { return idPattern.MatchString(id) }

// locationName is "projects/{p}/locations/{l}".
func parseLocation(name string) (project, location string, err error) {
	p := strings.Split(name, "/")
	if len(p) != 4 || p[0] != "projects" || p[2] != "locations" || p[1] == "" || p[3] == "" {
		return "", "", invalidName(name, "projects/*/locations/*")
	}
	return p[1], p[3], nil
}

// parseKeyRingName checks "projects/{p}/locations/{l}/keyRings/{r}".
func parseKeyRingName(name string) error {
	p := strings.Split(name, "/")
	if len(p) != 6 || p[4] != "keyRings" || !validID(p[5]) {
		return invalidName(name, "projects/*/locations/*/keyRings/*")
	}
	if _, _, err := parseLocation(strings.Join(p[:4], "/")); err != nil {
		return invalidName(name, "projects/*/locations/*/keyRings/*")
	}
	return nil
}

// parseCryptoKeyName checks ".../keyRings/{r}/cryptoKeys/{k}" and returns the
// key ring name.
func parseCryptoKeyName(name string) (ring string, err error) {
	i := strings.LastIndex(name, "/cryptoKeys/")
	if i < 0 || !validID(name[i+len("/cryptoKeys/"):]) || parseKeyRingName(name[:i]) != nil {
		return "", invalidName(name, "projects/*/locations/*/keyRings/*/cryptoKeys/*")
	}
	return name[:i], nil
}

// parseVersionName checks ".../cryptoKeys/{k}/cryptoKeyVersions/{n}" and
// returns the CryptoKey name and the version number.
func parseVersionName(name string) (key string, n int, err error) {
	i := strings.LastIndex(name, "/cryptoKeyVersions/")
	if i < 0 {
		return "", 0, invalidName(name, "projects/*/locations/*/keyRings/*/cryptoKeys/*/cryptoKeyVersions/*")
	}
	n, convErr := strconv.Atoi(name[i+len("/cryptoKeyVersions/"):])
	if _, err := parseCryptoKeyName(name[:i]); err != nil || convErr != nil || n <= 0 {
		return "", 0, invalidName(name, "projects/*/locations/*/keyRings/*/cryptoKeys/*/cryptoKeyVersions/*")
	}
	return name[:i], n, nil
}

// projectOf returns the project ID in any resource name below projects/{p}.
func projectOf(name string) string {
	p := strings.SplitN(name, "/", 3)
	if len(p) >= 2 && p[0] == "projects" {
		return p[1]
	}
	return ""
}

// locationOf returns the location in any resource name below
// projects/{p}/locations/{l} ("global" when the name has none).
func locationOf(name string) string {
	p := strings.SplitN(name, "/", 5)
	if len(p) >= 4 && p[0] == "projects" && p[2] == "locations" {
		return p[3]
	}
	return "global"
}

func invalidName(name, pattern string) error {
	return status.Errorf(codes.InvalidArgument, "Resource name [%s] does not match the pattern %s.", name, pattern)
}

func versionName(key string, n int) string { return fmt.Sprintf("%s/cryptoKeyVersions/%d", key, n) }
