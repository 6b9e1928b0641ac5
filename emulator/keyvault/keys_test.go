package keyvault

import (
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

func TestKeyLifecycleWithSDK(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{DeletionDelay: instantDeletion})
	c := newClient(t, s, "")
	cx := ctx(t)

	created, err := c.CreateKey(cx, "k1", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC), Curve: ptr(azkeys.CurveNameP256), Tags: map[string]*string{"a": ptr("1")}}, nil)
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if got := *created.Key.Kty; got != azkeys.KeyTypeEC {
		t.Errorf("kty = %s", got)
	}
	if created.Key.KID.Name() != "k1" || len(created.Key.KID.Version()) != 32 {
		t.Errorf("kid = %s", *created.Key.KID)
	}
	if len(created.Key.X) != 32 || len(created.Key.Y) != 32 {
		t.Errorf("x/y lengths %d/%d", len(created.Key.X), len(created.Key.Y))
	}
	got, err := c.GetKey(cx, "k1", "", nil)
	if err != nil {
		t.Fatalf("GetKey latest: %v", err)
	}
	if *got.Key.KID != *created.Key.KID {
		t.Errorf("latest kid %s != %s", *got.Key.KID, *created.Key.KID)
	}
	if _, err := c.GetKey(cx, "k1", created.Key.KID.Version(), nil); err != nil {
		t.Fatalf("GetKey version: %v", err)
	}
	v2, err := c.CreateKey(cx, "k1", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
	if err != nil {
		t.Fatalf("CreateKey v2: %v", err)
	}
	if v2.Key.KID.Version() == created.Key.KID.Version() {
		t.Fatal("second create did not make a new version")
	}

	_, err = c.GetKey(cx, "nope", "", nil)
	wantRespErr(t, err, http.StatusNotFound, CodeKeyNotFound)

	if _, err := c.DeleteKey(cx, "k1", nil); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	_, err = c.CreateKey(cx, "k1", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
	wantRespErr(t, err, http.StatusConflict, CodeConflict)
	if _, err := c.RecoverDeletedKey(cx, "k1", nil); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if _, err := c.DeleteKey(cx, "k1", nil); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	if _, err := c.PurgeDeletedKey(cx, "k1", nil); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if _, err := c.CreateKey(cx, "k1", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatalf("CreateKey after purge: %v", err)
	}
}
