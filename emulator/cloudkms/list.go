package cloudkms

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Paging limits. The KMS v1 reference says only that the server picks a
// default; the emulator uses 1000 for both the default and the cap (what the
// KMS inventory API documents), so a client that forgets to page still gets
// everything in small test setups and one that pages gets exactly what it
// asked for.
const (
	defaultPageSize = 1000
	maxPageSize     = 1000
)

var (
	keyRingSchema = &schema{fields: map[string]fieldKind{
		"name": kindString, "create_time": kindTime,
	}}
	versionEnums = map[string]map[string]int32{
		"state":            kmspb.CryptoKeyVersion_CryptoKeyVersionState_value,
		"algorithm":        kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm_value,
		"protection_level": kmspb.ProtectionLevel_value,
	}
	versionSchema = &schema{
		fields: map[string]fieldKind{
			"name": kindString, "state": kindEnum, "algorithm": kindEnum, "protection_level": kindEnum,
			"create_time": kindTime, "generate_time": kindTime, "destroy_time": kindTime, "destroy_event_time": kindTime,
		},
		enums: versionEnums,
	}
	cryptoKeySchema = &schema{
		fields: map[string]fieldKind{
			"name": kindString, "purpose": kindEnum, "create_time": kindTime, "import_only": kindBool,
			"destroy_scheduled_duration": kindDuration,
			"version_template.algorithm": kindEnum, "version_template.protection_level": kindEnum,
			"primary.name": kindString, "primary.state": kindEnum, "primary.algorithm": kindEnum,
			"primary.protection_level": kindEnum, "primary.create_time": kindTime,
		},
		enums: map[string]map[string]int32{
			"purpose":                           kmspb.CryptoKey_CryptoKeyPurpose_value,
			"version_template.algorithm":        versionEnums["algorithm"],
			"version_template.protection_level": versionEnums["protection_level"],
			"primary.state":                     versionEnums["state"],
			"primary.algorithm":                 versionEnums["algorithm"],
			"primary.protection_level":          versionEnums["protection_level"],
		},
		maps: map[string]bool{"labels": true},
	}
)

func keyRingRecord(r *keyRing) record {
	return mapRecord{"name": r.name, "create_time": formatTime(r.createTime)}
}

func versionRecord(v *keyVersion) record {
	m := mapRecord{
		"name": v.name, "state": v.state.String(), "algorithm": v.algorithm.String(),
		"protection_level": v.protection.String(), "create_time": formatTime(v.createTime),
	}
	for k, t := range map[string]time.Time{"generate_time": v.generateTime, "destroy_time": v.destroyTime, "destroy_event_time": v.destroyEventTime} {
		if !t.IsZero() {
			m[k] = formatTime(t)
		}
	}
	return m
}

func cryptoKeyRecord(k *cryptoKey) record {
	m := mapRecord{
		"name": k.name, "purpose": k.purpose.String(), "create_time": formatTime(k.createTime),
		"import_only": formatBool(k.importOnly), "destroy_scheduled_duration": k.destroyDuration.String(),
		"version_template.algorithm": k.algorithm.String(), "version_template.protection_level": k.protection.String(),
	}
	for lk, lv := range k.labels {
		m["labels."+lk] = lv
	}
	return m
}

// pageToken is the opaque cursor handed to clients: the sort key of the last
// item returned plus a hash of the query, so a token cannot be replayed
// against a different query (the service answers InvalidArgument then too).
type pageToken struct {
	After string `json:"a"`
	Query string `json:"q"`
}

// listItem is one candidate of a List call.
type listItem[T any] struct {
	name string
	seq  int64
	v    T
}

// page applies ordering, the page token and the page size to items (already
// filtered) and returns one page and the next page token.
func page[T any](items []listItem[T], parent, filterStr, orderBy string, size int32, token string) ([]T, string, error) {
	// Extra blanks do not change the query: a blank order_by is the default
	// order, and the cursor below must follow the order actually used.
	orderBy = strings.Join(strings.Fields(orderBy), " ")
	desc := false
	switch orderBy {
	case "":
		// creation order (versions: by number)
	case "name", "name asc":
		sort.SliceStable(items, func(i, j int) bool { return items[i].name < items[j].name })
	case "name desc":
		desc = true
		sort.SliceStable(items, func(i, j int) bool { return items[i].name > items[j].name })
	default:
		return nil, "", status.Errorf(codes.InvalidArgument, "Invalid order_by %q: only \"name\" and \"name desc\" are supported.", orderBy)
	}
	if size < 0 {
		return nil, "", status.Errorf(codes.InvalidArgument, "page_size must not be negative, got %d", size)
	}
	if size == 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	h := sha256.Sum256([]byte(parent + "\x00" + filterStr + "\x00" + orderBy))
	qh := base64.RawURLEncoding.EncodeToString(h[:8])
	key := func(it listItem[T]) string {
		if orderBy == "" {
			return sortableSeq(it.seq)
		}
		return it.name
	}
	start := 0
	if token != "" {
		raw, err := base64.RawURLEncoding.DecodeString(token)
		var pt pageToken
		if err == nil {
			err = json.Unmarshal(raw, &pt)
		}
		if err != nil || pt.Query != qh {
			return nil, "", status.Errorf(codes.InvalidArgument, "Invalid page_token %q.", token)
		}
		start = len(items)
		for i, it := range items {
			k := key(it)
			if (!desc && k > pt.After) || (desc && k < pt.After) {
				start = i
				break
			}
		}
	}
	end := min(start+int(size), len(items))
	out := make([]T, 0, end-start)
	for _, it := range items[start:end] {
		out = append(out, it.v)
	}
	next := ""
	if end < len(items) {
		b, _ := json.Marshal(pageToken{After: key(items[end-1]), Query: qh})
		next = base64.RawURLEncoding.EncodeToString(b)
	}
	return out, next, nil
}

// sortableSeq renders a sequence number so string order equals numeric order.
func sortableSeq(n int64) string {
	const digits = 19
	s := []byte(strings.Repeat("0", digits))
	for i := digits - 1; i >= 0 && n > 0; i-- {
		s[i] = byte('0' + n%10)
		n /= 10
	}
	return string(s)
}

// parentOf cuts name at the last occurrence of sep.
func parentOf(name, sep string) string {
	if i := strings.LastIndex(name, sep); i >= 0 {
		return name[:i]
	}
	return ""
}

// sortBySeq puts items in creation order.
func sortBySeq[T any](items []listItem[T]) {
	sort.Slice(items, func(i, j int) bool { return items[i].seq < items[j].seq })
}
