package azurekv

import (
	"strings"

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
	case strings.TrimSpace(*serverID) == "" || *serverID != strings.TrimSpace(*serverID):
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
