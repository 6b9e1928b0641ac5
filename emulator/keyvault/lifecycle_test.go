package keyvault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

func TestClockDrivesDatesAndRetention(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{Vaults: []VaultSpec{{Name: "seven", RetentionDays: 7}, {Name: "locked", PurgeProtection: true}}, DeletionDelay: instantDeletion})
	cx := ctx(t)
	c := newClient(t, s, "seven")
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Clock().Set(start)
	k, err := c.CreateKey(cx, "k", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := k.Attributes.Created.Sub(start); d < 0 || d > 5*time.Second {
		t.Errorf("created %v, want about %v", k.Attributes.Created, start)
	}
	if *k.Attributes.RecoveryLevel != "CustomizedRecoverable+Purgeable" || *k.Attributes.RecoverableDays != 7 {
		t.Errorf("recovery %s/%d", *k.Attributes.RecoveryLevel, *k.Attributes.RecoverableDays)
	}
	s.Clock().Advance(48 * time.Hour)
	u, err := c.UpdateKey(cx, "k", "", azkeys.UpdateKeyParameters{Tags: map[string]*string{"spire-td": ptr("example.org")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := u.Attributes.Updated.Sub(*u.Attributes.Created); d < 48*time.Hour || d > 48*time.Hour+5*time.Second {
		t.Errorf("updated - created = %v, want 48h", d)
	}
	if *u.Tags["spire-td"] != "example.org" {
		t.Errorf("tags %v", u.Tags)
	}
	del, err := c.DeleteKey(cx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := del.ScheduledPurgeDate.Sub(*del.DeletedDate); got != 7*24*time.Hour {
		t.Errorf("scheduledPurgeDate - deletedDate = %v, want 7 days", got)
	}
	if !strings.HasSuffix(*del.RecoveryID, "/deletedkeys/k") {
		t.Errorf("recoveryId %s", *del.RecoveryID)
	}
	if _, err := c.GetDeletedKey(cx, "k", nil); err != nil {
		t.Fatal(err)
	}
	s.Clock().Advance(7*24*time.Hour + time.Second)
	_, err = c.GetDeletedKey(cx, "k", nil)
	wantRespErr(t, err, http.StatusNotFound, CodeKeyNotFound)
	if _, err := c.CreateKey(cx, "k", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatalf("name reusable after the retention: %v", err)
	}

	// exp blocks signing but not verifying.
	exp := s.Clock().Now().Add(time.Hour)
	if _, err := c.UpdateKey(cx, "k", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Expires: &exp}}, nil); err != nil {
		t.Fatal(err)
	}
	sig, err := c.Sign(cx, "k", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Clock().Advance(2 * time.Hour)
	_, err = c.Sign(cx, "k", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
	wantRespErr(t, err, http.StatusForbidden, CodeForbidden)
	if v, err := c.Verify(cx, "k", "", azkeys.VerifyParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Digest: make([]byte, 32), Signature: sig.Result}, nil); err != nil || !*v.Value {
		t.Errorf("verify with an expired key: %v", err)
	}

	// Purge protection.
	l := newClient(t, s, "locked")
	if _, err := l.CreateKey(cx, "p", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.DeleteKey(cx, "p", nil); err != nil {
		t.Fatal(err)
	}
	_, err = l.PurgeDeletedKey(cx, "p", nil)
	wantRespErr(t, err, http.StatusForbidden, CodeForbidden)
}

func TestUpdateTagsAndLimits(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := newClient(t, s, "")
	cx := ctx(t)
	if _, err := c.CreateKey(cx, "k", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC), Tags: map[string]*string{"a": ptr("1"), "b": ptr("2")}}, nil); err != nil {
		t.Fatal(err)
	}
	many := map[string]*string{}
	for i := range 16 {
		many[fmt.Sprintf("t%d", i)] = ptr("v")
	}
	tests := []struct {
		name string
		tags map[string]*string
		ok   bool
	}{
		{"15 tags", func() map[string]*string {
			m := map[string]*string{}
			for i := range 15 {
				m[fmt.Sprintf("t%d", i)] = ptr("v")
			}
			return m
		}(), true},
		{"16 tags", many, false},
		{"long name", map[string]*string{strings.Repeat("n", 257): ptr("v")}, false},
		{"long value", map[string]*string{"n": ptr(strings.Repeat("v", 257))}, false},
		{"256 characters", map[string]*string{strings.Repeat("n", 256): ptr(strings.Repeat("v", 256))}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.UpdateKey(cx, "k", "", azkeys.UpdateKeyParameters{Tags: tt.tags}, nil)
			if tt.ok && err != nil {
				t.Fatalf("UpdateKey: %v", err)
			}
			if !tt.ok {
				wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
			}
		})
	}
	_, err := c.CreateKey(cx, "bad_name", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
	wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
	_, err = c.CreateKey(cx, "oct", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeOct)}, nil)
	wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
	_, err = c.CreateKey(cx, "k256k", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC), Curve: ptr(azkeys.CurveNameP256K)}, nil)
	wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
	_, err = c.CreateKey(cx, "badops", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC), KeyOps: []*azkeys.KeyOperation{ptr(azkeys.KeyOperationEncrypt)}}, nil)
	wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
}

func TestManagedHSMAndSKUs(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{Vaults: []VaultSpec{{Name: "std", SKU: SKUStandard}, {Name: "prem"}}, ManagedHSMs: []string{"hsm-one"}})
	cx := ctx(t)
	h := newClient(t, s, "hsm-one")
	k, err := h.CreateKey(cx, "ec", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC), Curve: ptr(azkeys.CurveNameP384)}, nil)
	if err != nil {
		t.Fatalf("HSM create: %v", err)
	}
	if *k.Key.Kty != azkeys.KeyTypeECHSM {
		t.Errorf("Managed HSM kty %s, want EC-HSM", *k.Key.Kty)
	}
	if _, err := h.Sign(cx, "ec", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES384), Value: make([]byte, 48)}, nil); err != nil {
		t.Fatalf("HSM sign: %v", err)
	}
	std, prem := newClient(t, s, "std"), newClient(t, s, "prem")
	for _, kty := range []azkeys.KeyType{azkeys.KeyTypeECHSM, azkeys.KeyTypeRSAHSM} {
		_, err := std.CreateKey(cx, "hsm", azkeys.CreateKeyParameters{Kty: &kty}, nil)
		re := wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
		if !strings.Contains(re.Error(), "Hardware key operation not allowed on standard vault") {
			t.Errorf("standard vault error: %v", re)
		}
	}
	pk, err := prem.CreateKey(cx, "hsm", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeECHSM)}, nil)
	if err != nil || *pk.Key.Kty != azkeys.KeyTypeECHSM {
		t.Fatalf("premium EC-HSM: %v", err)
	}
	if s.VaultCounts("hsm-one")["CreateKey"] != 1 || s.VaultCounts("prem")["CreateKey"] != 1 {
		t.Errorf("per-vault counts: hsm %v prem %v", s.VaultCounts("hsm-one"), s.VaultCounts("prem"))
	}
}

func TestImportBackupRestoreRotateRNG(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{DeletionDelay: instantDeletion})
	c := newClient(t, s, "")
	cx := ctx(t)

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := priv.PublicKey.Bytes()
	d, _ := priv.Bytes()
	imp, err := c.ImportKey(cx, "imported", azkeys.ImportKeyParameters{Key: &azkeys.JSONWebKey{
		Kty: ptr(azkeys.KeyTypeEC), Crv: ptr(azkeys.CurveNameP256), X: raw[1:33], Y: raw[33:], D: d,
	}, Tags: map[string]*string{"src": ptr("import")}}, nil)
	if err != nil {
		t.Fatalf("ImportKey: %v", err)
	}
	if string(imp.Key.X) != string(raw[1:33]) || imp.Key.D != nil {
		t.Error("imported public key differs or private key returned")
	}

	rot, err := c.RotateKey(cx, "imported", nil)
	if err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	if rot.Key.KID.Version() == imp.Key.KID.Version() || *rot.Key.Crv != azkeys.CurveNameP256 || *rot.Tags["src"] != "import" {
		t.Errorf("rotated key %+v", rot.Key)
	}
	pol, err := c.GetKeyRotationPolicy(cx, "imported", nil)
	if err != nil || len(pol.LifetimeActions) == 0 {
		t.Fatalf("GetKeyRotationPolicy: %v", err)
	}
	_, err = c.UpdateKeyRotationPolicy(cx, "imported", azkeys.KeyRotationPolicy{Attributes: &azkeys.KeyRotationPolicyAttributes{ExpiryTime: ptr("P90D")}}, nil)
	if err != nil {
		t.Fatalf("UpdateKeyRotationPolicy: %v", err)
	}
	rot2, err := c.RotateKey(cx, "imported", nil)
	if err != nil || rot2.Attributes.Expires == nil {
		t.Fatalf("rotate with expiry policy: %v %+v", err, rot2.Attributes)
	}

	bk, err := c.BackupKey(cx, "imported", nil)
	if err != nil {
		t.Fatalf("BackupKey: %v", err)
	}
	_, err = c.RestoreKey(cx, azkeys.RestoreKeyParameters{KeyBackup: bk.Value}, nil)
	wantRespErr(t, err, http.StatusConflict, CodeConflict)
	if _, err := c.DeleteKey(cx, "imported", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.RestoreKey(cx, azkeys.RestoreKeyParameters{KeyBackup: bk.Value}, nil)
	wantRespErr(t, err, http.StatusConflict, CodeConflict)
	if _, err := c.PurgeDeletedKey(cx, "imported", nil); err != nil {
		t.Fatal(err)
	}
	res, err := c.RestoreKey(cx, azkeys.RestoreKeyParameters{KeyBackup: bk.Value}, nil)
	if err != nil || *res.Key.KID != *rot2.Key.KID {
		t.Fatalf("RestoreKey: %v", err)
	}
	n := 0
	for p := c.NewListKeyPropertiesVersionsPager("imported", nil); p.More(); {
		page, err := p.NextPage(cx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 3 {
		t.Errorf("%d versions restored, want 3", n)
	}

	rb, err := c.GetRandomBytes(cx, azkeys.GetRandomBytesParameters{Count: ptr(int32(33))}, nil)
	if err != nil || len(rb.Value) != 33 {
		t.Fatalf("GetRandomBytes: %v", err)
	}
}

func TestSeedKeyForAdoption(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	kid, err := s.SeedKey(DefaultVaultName, SeedKey{Name: "spire-key-x", Signer: priv, Tags: map[string]string{"spire-server-td": "example.org"}, Created: created})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s, "")
	got, err := c.GetKey(ctx(t), "spire-key-x", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(*got.Key.KID) != kid || !got.Attributes.Created.Equal(created) || *got.Tags["spire-server-td"] != "example.org" {
		t.Errorf("seeded key %s %v %v", *got.Key.KID, got.Attributes.Created, got.Tags)
	}
	later := created.Add(24 * time.Hour)
	if err := s.SetKeyAttributes(DefaultVaultName, "spire-key-x", "", map[string]string{"x": "y"}, time.Time{}, later); err != nil {
		t.Fatal(err)
	}
	got, _ = c.GetKey(ctx(t), "spire-key-x", "", nil)
	if !got.Attributes.Updated.Equal(later) || *got.Tags["x"] != "y" {
		t.Errorf("after SetKeyAttributes: %v %v", got.Attributes.Updated, got.Tags)
	}
	if names := s.KeyNames(DefaultVaultName); len(names) != 1 || names[0] != "spire-key-x" {
		t.Errorf("KeyNames = %v", names)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s1, err := Start(t.Context(), Options{DataDir: dir, DeletionDelay: instantDeletion})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s1, "")
	k, err := c.CreateKey(ctx(t), "kept", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateKey(ctx(t), "gone", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteKey(ctx(t), "gone", nil); err != nil {
		t.Fatal(err)
	}
	ca, secret := s1.CAPEM(), s1.ClientSecret()
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := startServer(t, Options{DataDir: dir})
	if string(s2.CAPEM()) != string(ca) || s2.ClientSecret() != secret {
		t.Error("CA or client secret changed across restart")
	}
	c2 := newClient(t, s2, "")
	got, err := c2.GetKey(ctx(t), "kept", "", nil)
	if err != nil {
		t.Fatalf("GetKey after restart: %v", err)
	}
	if string(got.Key.X) != string(k.Key.X) {
		t.Error("key material changed across restart")
	}
	if _, err := c2.Sign(ctx(t), "kept", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.GetDeletedKey(ctx(t), "gone", nil); err != nil {
		t.Errorf("deleted key lost across restart: %v", err)
	}
}

// TestAsynchronousSoftDelete checks the service's soft delete in progress:
// for DeletionDelay after DELETE answers 200, the key is neither live nor
// found as deleted, the deleted listing leaves it out, and purge, recover
// and re-creation answer 409 ObjectIsBeingDeleted; once the delay has
// passed on the emulator's clock, the deleted key is there and purgeable.
func TestAsynchronousSoftDelete(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{DeletionDelay: time.Hour})
	c := newClient(t, s, "")
	cx := ctx(t)
	if _, err := c.CreateKey(cx, "k", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteKey(cx, "k", nil); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	innerCode := func(re *azcore.ResponseError) string {
		var body struct {
			Error struct {
				Message    string `json:"message"`
				InnerError struct {
					Code string `json:"code"`
				} `json:"innererror"`
			} `json:"error"`
		}
		b, _ := runtime.Payload(re.RawResponse)
		_ = json.Unmarshal(b, &body)
		return body.Error.InnerError.Code + ": " + body.Error.Message
	}
	for _, tt := range []struct {
		name   string
		call   func() error
		status int
		code   string
		inner  string
	}{
		{"GetKey", func() error { _, err := c.GetKey(cx, "k", "", nil); return err }, 404, CodeKeyNotFound, ""},
		{"GetDeletedKey", func() error { _, err := c.GetDeletedKey(cx, "k", nil); return err }, 404, CodeKeyNotFound, "Deleted Key not found"},
		{"PurgeDeletedKey", func() error { _, err := c.PurgeDeletedKey(cx, "k", nil); return err }, 409, CodeConflict, CodeObjectIsBeingDeleted},
		{"RecoverDeletedKey", func() error { _, err := c.RecoverDeletedKey(cx, "k", nil); return err }, 409, CodeConflict, CodeObjectIsBeingDeleted},
		{"CreateKey", func() error {
			_, err := c.CreateKey(cx, "k", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
			return err
		}, 409, CodeConflict, CodeObjectIsBeingDeleted},
	} {
		re := wantRespErr(t, tt.call(), tt.status, tt.code)
		if got := innerCode(re); !strings.Contains(got, tt.inner) {
			t.Errorf("%s while being deleted: %q, want %q", tt.name, got, tt.inner)
		}
	}
	listed := func() int {
		n := 0
		for p := c.NewListDeletedKeyPropertiesPager(nil); p.More(); {
			page, err := p.NextPage(cx)
			if err != nil {
				t.Fatal(err)
			}
			n += len(page.Value)
		}
		return n
	}
	if n := listed(); n != 0 {
		t.Errorf("%d deleted keys listed while the delete is in progress, want 0", n)
	}

	s.Clock().Advance(time.Hour)
	if _, err := c.GetDeletedKey(cx, "k", nil); err != nil {
		t.Fatalf("GetDeletedKey once deleted: %v", err)
	}
	if n := listed(); n != 1 {
		t.Errorf("%d deleted keys listed once deleted, want 1", n)
	}
	if _, err := c.PurgeDeletedKey(cx, "k", nil); err != nil {
		t.Fatalf("PurgeDeletedKey once deleted: %v", err)
	}
}
