package azurekv

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Names and tags exactly as SPIRE's built-in azure_key_vault plugin writes
// them, so that each side recognises the other's keys.
const (
	keyPrefix       = "spire-key-"
	tagTrustDomain  = "spire-server-td"
	tagServerID     = "spire-server-id"
	uuidLen         = 36
	keyIDOffset     = len(keyPrefix) + uuidLen + 1 // the built-in's fixed offset
	maxKeyNameLen   = 127                          // Key Vault's limit on key names
	maxTailLen      = maxKeyNameLen - keyIDOffset
	maxTagLen       = 256 // Key Vault's limit on tag names and values
	maxTags         = 15  // Key Vault's limit on tags per key
	reservedPrefix  = "spire-"
	reservedPrefix2 = "azure:"
)

// tagKeyID holds the SPIRE key ID when the key name cannot: Key Vault names
// allow only letters, digits and '-', and at most 127 characters. SPIRE's
// own key IDs (x509-CA-A, JWT-Signer-B, ...) never need it, so keys of the
// built-in layout carry only its two tags.
const tagKeyID = "spire-key-id"

// ownTags is how many tags the plugin may write on one key: the built-in's
// two, tagKeyID and tagLeases. key_tags must leave room for them.
const ownTags = 4

// nameSafe reports whether a SPIRE key ID can be the tail of a key name as
// is: letters, digits and '-' only, and short enough.
func nameSafe(keyID string) bool {
	if keyID == "" || len(keyID) > maxTailLen {
		return false
	}
	for _, r := range keyID {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// nameTail is the key-name form of a SPIRE key ID: the ID itself when it is
// name-safe, otherwise the ID with every other character replaced by '-' and
// cut to fit (the tagKeyID tag then holds the real ID).
func nameTail(keyID string) string {
	if nameSafe(keyID) {
		return keyID
	}
	b := []byte(keyID)
	for i, c := range b {
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			b[i] = '-'
		}
	}
	if len(b) > maxTailLen {
		b = b[:maxTailLen]
	}
	return string(b)
}

// keyName returns a new key name for a generation of keyID, laid out as the
// built-in plugin forms it: spire-key-<UUID>-<key ID>. The UUID is a version
// 7 one (time-ordered, monotonic within the process), not the built-in's
// version 4: Key Vault keeps creation times in whole seconds, and the engine
// orders two generations created in the same second by their names, so a
// random UUID made a restarted server serve the older of two generations of a
// key ID created within one second (and retire the one GenerateKey had
// returned). Both plugins parse any UUID at the fixed offset.
func keyName(keyID string) string {
	return keyPrefix + uuid.Must(uuid.NewV7()).String() + "-" + nameTail(keyID)
}

// parsedName is what a key's name and tags say about it.
type parsedName struct {
	keyID    string
	serverID string
}

// nameProblem says why a key that looks like ours (prefix and trust-domain
// tag) is skipped; "" means it is not ours at all and is skipped silently.
type nameProblem string

// parseKey recognises a key of this trust domain from its name and tags. It
// never panics on odd input: the built-in plugin crashes on a key with the
// trust-domain tag but no server-ID tag.
func parseKey(name string, tags map[string]*string, trustDomain string) (parsedName, nameProblem) {
	if !strings.HasPrefix(name, keyPrefix) || tagValue(tags, tagTrustDomain) != trustDomain {
		return parsedName{}, ""
	}
	if len(name) <= keyIDOffset || name[keyIDOffset-1] != '-' {
		return parsedName{}, "its name does not follow spire-key-<UUID>-<key ID>"
	}
	if _, err := uuid.Parse(name[len(keyPrefix) : keyIDOffset-1]); err != nil {
		return parsedName{}, "its name does not hold a UUID after spire-key-"
	}
	serverID, ok := tags[tagServerID]
	switch {
	case !ok || serverID == nil:
		return parsedName{}, "it has no spire-server-id tag"
	case spacedTag(*serverID):
		return parsedName{}, "its spire-server-id tag is empty or has surrounding spaces"
	}
	tail := name[keyIDOffset:]
	keyID := tail
	if id := tagValue(tags, tagKeyID); id != "" {
		if nameTail(id) != tail {
			return parsedName{}, "its spire-key-id tag does not match its name"
		}
		keyID = id
	}
	return parsedName{keyID: keyID, serverID: *serverID}, ""
}

// spacedTag reports whether a spire-server-id tag is empty or begins or
// ends with white space: parseKey skips such keys, and checkServerID refuses
// such server IDs.
func spacedTag(v string) bool {
	return v == "" || strings.TrimSpace(v) != v
}

// checkServerID says why serverID cannot be this server's spire-server-id
// tag. Every key the server creates is tagged with it, and the listing must
// read back exactly what was written: a tag parseKey skips (spacedTag), or
// one Key Vault would store altered, leaves the server finding none of its
// keys after a restart, and nothing ever retires them. What it accepts, any
// printable UTF-8 text of at most maxTagLen characters with no white space
// at either end, round-trips through the tag's JSON and parseKey (see
// TestServerIDRoundTrip); control characters are refused too, although JSON
// would carry them: they are never meant, and Key Vault documents nothing
// about keeping them.
func checkServerID(serverID string) error {
	allowed := fmt.Sprintf("a Key Vault server ID may hold any printable characters (letters of any script, digits, punctuation, spaces inside it) up to %d characters, but no control characters and no white space at either end", maxTagLen)
	switch {
	case spacedTag(serverID):
		return fmt.Errorf("it is empty or begins or ends with white space, and the vault's listing skips keys whose %s tag is so: after a restart the server would find none of its keys; %s", tagServerID, allowed)
	case !utf8.ValidString(serverID):
		return fmt.Errorf("it is not valid UTF-8, and the %s tag would hold it altered; %s", tagServerID, allowed)
	case strings.ContainsFunc(serverID, unicode.IsControl):
		return fmt.Errorf("it holds a control character (a tab, a line break or another invisible one); %s", allowed)
	case tagLen(serverID) > maxTagLen:
		return fmt.Errorf("it is %d characters long, and a Key Vault tag value holds at most %d; %s", tagLen(serverID), maxTagLen, allowed)
	}
	return nil
}

// tagLen is the length of a tag value as Key Vault may count it: in UTF-16
// code units, as .NET strings do, so that a character outside the Basic
// Multilingual Plane (an emoji) counts twice. For text that Go counts in
// characters it is never less, so checking it errs on the safe side.
func tagLen(v string) int {
	n := 0
	for _, r := range v {
		n += utf16.RuneLen(r)
	}
	return n
}

func tagValue(tags map[string]*string, name string) string {
	if v := tags[name]; v != nil {
		return *v
	}
	return ""
}

// keyTags returns the tags of a new key: the user's key_tags, then the
// plugin's own (which the checks keep the user from overriding).
func keyTags(user map[string]string, trustDomain, serverID, keyID string) map[string]*string {
	tags := make(map[string]*string, len(user)+ownTags)
	for k, v := range user {
		tags[k] = ptr(v)
	}
	tags[tagTrustDomain] = ptr(trustDomain)
	tags[tagServerID] = ptr(serverID)
	if !nameSafe(keyID) {
		tags[tagKeyID] = ptr(keyID)
	}
	return tags
}

func ptr[T any](v T) *T { return &v }
