package reliability

import (
	"context"
	"crypto"
	"crypto/sha256"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// malformedCase is a cloud answer damaged on its way to the plugin, while
// SPIRE signs or rotates.
type malformedCase struct {
	name string
	// damage makes every answer of one kind malformed until clear.
	damage func(t *testing.T)
	// rotate is true when the damage hits key creation, false for signing.
	rotate bool
	// wantIn is a part of the error message.
	wantIn string
}

// TestMalformedAnswers damages what the emulators answer (malformed public
// keys, answers for another key or version, signatures of the wrong length
// or by another key, the CRC32C and name checks of Cloud KMS) while the
// built plugin signs and rotates: every call fails with Internal, the code
// docs/troubleshooting.md documents for a misbehaving cloud, and a message
// saying what was wrong; no signature that does not verify is ever
// returned; the process does not panic and works on once the answers are
// whole again.
func TestMalformedAnswers(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		var runs []subtest
		// The cases' names, from a vault of no instance: the damage
		// functions are only called on each run's own vault.
		for _, mc := range malformedCases(s.name, nil) {
			runs = append(runs, subtest{mc.name, func(t *testing.T) { runMalformed(t, s, mc.name) }})
		}
		if len(runs) == 0 {
			t.Skip("the in-memory backend has no cloud answers to damage")
		}
		runConcurrently(t, 4, runs)
	})
}

// malformedCases lists the damaged answers of setup name's cloud, acting on
// v.
func malformedCases(name string, v vault) []malformedCase {
	switch name {
	case "azure":
		in := func(o string, m keyvault.Malform) func(*testing.T) {
			return func(*testing.T) { v.(*azureVault).srv.InjectFault(keyvault.Fault{Op: o, Malform: m}) }
		}
		return []malformedCase{
			{"CreateKey/malformed JWK", in("CreateKey", keyvault.MalformJWK), true, "EC key"},
			{"CreateKey/another key's ID", in("CreateKey", keyvault.MalformKeyID), true, "the vault returned key"},
			{"Sign/another version's ID", in("Sign", keyvault.MalformKeyID), false, "asked for version"},
			{"Sign/signature of the wrong length", in("Sign", keyvault.MalformSignatureLength), false, "bytes long"},
			{"Sign/signature by another key", in("Sign", keyvault.MalformSignatureKey), false, "does not verify"},
		}
	case "gcp":
		// Cloud KMS answers carry CRC32C checksums and names: a damaged
		// answer is asked again a few times, then reported.
		in := func(m string, tm cloudkms.Tamper) func(*testing.T) {
			return func(*testing.T) { v.(*gcpVault).srv.InjectFault(cloudkms.Fault{Method: m, Tamper: tm}) }
		}
		return []malformedCase{
			{"GetPublicKey/pem_crc32c", in("GetPublicKey", cloudkms.TamperPEMCRC), true, "pem_crc32c"},
			{"GetPublicKey/damaged PEM", in("GetPublicKey", cloudkms.TamperPEM), true, "pem_crc32c"},
			{"GetPublicKey/another version's name", in("GetPublicKey", cloudkms.TamperName), true, "name"},
			{"AsymmetricSign/signature_crc32c", in("AsymmetricSign", cloudkms.TamperSignatureCRC), false, "signature_crc32c"},
			{"AsymmetricSign/damaged signature", in("AsymmetricSign", cloudkms.TamperSignature), false, "signature_crc32c"},
			{"AsymmetricSign/digest not verified", in("AsymmetricSign", cloudkms.TamperVerifiedDigest), false, "verified_digest_crc32c"},
			{"AsymmetricSign/another version's name", in("AsymmetricSign", cloudkms.TamperName), false, "name"},
		}
	}
	return nil
}

// runMalformed runs the case named name on a fresh vault of s.
func runMalformed(t *testing.T, s setup, name string) {
	h := newHarness(t, s)
	var mc malformedCase
	for _, c := range malformedCases(s.name, h.v) {
		if c.name == name {
			mc = c
		}
	}
	p := h.start("server-m", faultExtra)
	pk := h.mustGenerate(p, "x509-CA-A")
	mc.damage(t)
	ctx, cancel := context.WithTimeout(t.Context(), suite.lastingDeadline())
	defer cancel()
	var err error
	if mc.rotate {
		var next engine.PublicKey
		next, err = p.GenerateKey(ctx, "x509-CA-A", engine.ECP256)
		if h.record(err) == nil {
			t.Fatalf("GenerateKey with a damaged answer returned %s", next.Fingerprint)
		}
	} else {
		err = signUnverified(ctx, h, p, pk)
	}
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), mc.wantIn) {
		t.Errorf("with a damaged answer: %v; want Internal saying %q", err, mc.wantIn)
	}
	h.v.clear(t)
	stillWorks(t, h, p, pk)
}

// signUnverified signs with pk and fails the test if a signature comes back
// at all: it is returned only to check it.
func signUnverified(ctx context.Context, h *harness, p *pluginhost.Plugin, pk engine.PublicKey) error {
	d := sha256.Sum256([]byte("malformed " + pk.ID))
	sig, fp, err := p.SignData(ctx, pk.ID, d[:], crypto.SHA256)
	if err != nil {
		return h.record(err)
	}
	if verr := h.sign(ctx, p, pk); verr != nil {
		h.t.Errorf("a damaged answer gave a signature (%s, %d bytes) that fails the check: %v", fp, len(sig), verr)
	} else {
		h.t.Errorf("a damaged answer gave a signature (%s, %d bytes)", fp, len(sig))
	}
	return nil
}
