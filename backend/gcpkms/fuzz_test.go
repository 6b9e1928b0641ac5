package gcpkms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/kmskeeper/kmskeeper/engine"
)

// FuzzParsePublicKey feeds the GetPublicKey decoding any algorithm and PEM
// text, as a damaged or hostile answer could hold: it never panics, and a
// key it accepts has the SPIRE key type of its algorithm and survives PKIX
// encoding and parsing, as SPIRE will do with it.
func FuzzParsePublicKey(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	good := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	f.Add(int32(kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256), good)
	f.Add(int32(kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384), good)
	f.Add(int32(kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256), good)
	f.Add(int32(kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
	f.Add(int32(0), "")
	f.Fuzz(func(t *testing.T, alg int32, text string) {
		resp := &kmspb.PublicKey{Algorithm: kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm(alg), Pem: text}
		pub, a, err := parsePublicKey("projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1", resp)
		if err != nil {
			return
		}
		if got, err := engine.KeyTypeOf(pub); err != nil || got != a.keyType {
			t.Fatalf("accepted a key of type %v (%v) for algorithm %v", got, err, a.kms)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatalf("accepted a key that cannot be PKIX-encoded: %v", err)
		}
		back, err := x509.ParsePKIXPublicKey(der)
		if err != nil || !back.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Fatalf("the key does not survive PKIX: %v", err)
		}
	})
}

// FuzzLeaseLabel feeds the lease label parsing any value, as another tool
// or a damaged label could leave, and records a lease on any version over
// it: it never panics; every entry it accepts is one field of the value,
// exactly as encodeEntries writes that entry, so that every entry has one
// reading and survives a rewrite unchanged; and the label a lease is
// written into holds that lease, fits Cloud KMS's 63 characters and
// maxHolderEntries entries, keeps only entries the value held for other
// versions, and reads back entry for entry.
func FuzzLeaseLabel(f *testing.F) {
	for _, v := range []string{
		"3-1800000000123", "12-1800000000123-p", "1-1800000000123_2-1800000000456-p",
		"1-1800000000123_2-1800000000456-p_3-1800000000789", "9999-1800000000123-p_9998-1800000000123-p_9997-1800000000123-p",
		"10001-1800000000123-p_10002-1800000000123-p_10003-1800000000123-p", "3-5_3-6-p", "3-5__4-6", "_", "0-1", "03-5", "3--5", "x-y", "3-5-q", "", "-p",
	} {
		f.Add(v, uint64(4), int64(1_800_000_000_999), true)
		f.Add(v, uint64(3), int64(1_800_000_000_999), false)
	}
	f.Add("1-5_2-6_3-7", uint64(1<<63-1), int64(1<<63-1), true)
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	f.Fuzz(func(t *testing.T, v string, num uint64, ms int64, pending bool) {
		entries := parseEntries(v)
		fields := strings.Split(v, entrySep)
		for _, e := range entries {
			if e.num == 0 || e.renewed <= 0 || !slices.Contains(fields, e.String()) {
				t.Fatalf("accepted %q with the entry %+v, which writes as %q", v, e, e.String())
			}
		}
		// Written back, the entries read the same, all of them when up to
		// maxHolderEntries of versions up to fullVersionDigits digits.
		enc := encodeEntries(entries, 0)
		back := parseEntries(enc)
		short := len(entries) <= maxHolderEntries && !slices.ContainsFunc(entries, func(e leaseEntry) bool {
			return len(strconv.FormatUint(e.num, 10)) > fullVersionDigits || len(strconv.FormatInt(e.renewed, 10)) > msDigits
		})
		if len(enc) > maxLabelValLen || (short && len(back) != len(entries)) {
			t.Fatalf("%q: entries %v write back as %q", v, entries, enc)
		}
		for _, e := range back {
			if !slices.Contains(entries, e) {
				t.Fatalf("%q: entries %v write back as %q", v, entries, enc)
			}
		}

		if num == 0 || num >= 1<<63 || ms <= 0 {
			return
		}
		version := versionName(key, num)
		lease := engine.Lease{Holder: "h", Ref: version, Renewed: time.UnixMilli(ms), Pending: pending}
		labels := map[string]string{labelLeasePrefix + "h": v, labelLeasePrefix + "other": v}
		setLeases(labels, key, version, []engine.Lease{lease, {Holder: "other", Ref: version, Renewed: time.UnixMilli(ms)}})
		got := labels[labelLeasePrefix+"h"]
		written := parseEntries(got)
		if len(got) > maxLabelValLen || len(written) > maxHolderEntries || len(written) == 0 {
			t.Fatalf("writing %+v over %q left %q", lease, v, got)
		}
		for _, e := range written {
			switch {
			case e.num == num:
				if e != (leaseEntry{num: num, renewed: ms, pending: pending}) {
					t.Fatalf("writing %+v over %q recorded %+v", lease, v, e)
				}
			case !slices.Contains(entries, e):
				t.Fatalf("writing %+v over %q left %q, whose entry %q was not there", lease, v, got, e)
			}
		}
		if !slices.ContainsFunc(written, func(e leaseEntry) bool { return e.num == num }) {
			t.Fatalf("writing %+v over %q left %q, without it", lease, v, got)
		}
		if back := encodeEntries(written, num); back != got {
			t.Fatalf("%q writes back as %q", got, back)
		}
		var mine []engine.Lease
		for _, l := range leasesOf(key, labels) {
			if l.Holder == "h" {
				mine = append(mine, l)
			}
		}
		if len(mine) != len(written) {
			t.Fatalf("%q reads as %v", got, mine)
		}
	})
}
