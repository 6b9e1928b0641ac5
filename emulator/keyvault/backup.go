package keyvault

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// backupMagic starts every backup blob; blobs are otherwise opaque to
// clients, like the service's.
const backupMagic = "KMSKEEPER-AZUREKV-BACKUP-1\n"

// maxBackupVersions is the service's limit on versions in one backup.
const maxBackupVersions = 500

type backupBlob struct {
	ManagedHSM bool    `json:"managedHsm"`
	Key        *keyObj `json:"key"`
}

type valueParams struct {
	Value string `json:"value"`
}

func (s *Server) backupKey(c *call) (int, any, bool, *apiError) {
	c.v.mu.Lock()
	k, _, aerr := c.v.lookup(c.now, c.rt.name, "")
	var raw []byte
	if aerr == nil {
		if len(k.Versions) > maxBackupVersions {
			aerr = badParam("Backup of a key with more than %d versions is not supported.", maxBackupVersions)
		} else {
			raw, _ = json.Marshal(backupBlob{ManagedHSM: c.v.managedHSM, Key: k})
		}
	}
	c.v.mu.Unlock()
	if aerr != nil {
		return 0, nil, false, aerr
	}
	var buf bytes.Buffer
	buf.WriteString(backupMagic)
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	return http.StatusOK, valueParams{Value: b64(buf.Bytes())}, false, nil
}

func (s *Server) restoreKey(c *call) (int, any, bool, *apiError) {
	var p valueParams
	if err := decode(c.body, &p); err != nil {
		return 0, nil, false, err
	}
	raw, err := unb64(p.Value)
	if err != nil || !bytes.HasPrefix(raw, []byte(backupMagic)) {
		return 0, nil, false, badParam("Backup blob contains invalid or corrupt version.")
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw[len(backupMagic):]))
	if err != nil {
		return 0, nil, false, badParam("Backup blob contains invalid or corrupt version.")
	}
	js, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return 0, nil, false, badParam("Backup blob contains invalid or corrupt version.")
	}
	var b backupBlob
	if err := json.Unmarshal(js, &b); err != nil || b.Key == nil || len(b.Key.Versions) == 0 {
		return 0, nil, false, badParam("Backup blob contains invalid or corrupt version.")
	}
	if b.ManagedHSM != c.v.managedHSM {
		return 0, nil, false, badParam("The backup was taken from a different kind of vault and cannot be restored here.")
	}
	for _, kv := range b.Key.Versions {
		if err := kv.load(); err != nil {
			return 0, nil, false, badParam("Backup blob contains invalid or corrupt version.")
		}
		if strings.HasSuffix(kv.Kty, "-HSM") && !c.v.managedHSM && c.v.sku != SKUPremium {
			return 0, nil, false, badParam("Hardware key operation not allowed on standard vault")
		}
	}
	k := b.Key
	k.DeletedDate, k.ScheduledPurge, k.DeletionDone = 0, 0, 0
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	c.v.purgeExpired(c.now)
	if d, ok := c.v.deleted[lower(k.Name)]; ok {
		return 0, nil, false, deletedConflict(d, c.now)
	}
	if _, ok := c.v.keys[lower(k.Name)]; ok {
		return 0, nil, false, errf(http.StatusConflict, CodeConflict, "There was a conflict restoring the key '%s'. A key with the same name already exists; delete and purge it first.", k.Name)
	}
	c.v.keys[lower(k.Name)] = k
	return http.StatusOK, c.v.bundle(c.base, k, k.Versions[k.Latest]), true, nil
}

type rngParams struct {
	Count int `json:"count"`
}

func (s *Server) randomBytes(c *call) (int, any, bool, *apiError) {
	var p rngParams
	if err := decode(c.body, &p); err != nil {
		return 0, nil, false, err
	}
	if p.Count < 1 || p.Count > 128 {
		return 0, nil, false, badParam("The count must be between 1 and 128.")
	}
	b := make([]byte, p.Count)
	_, _ = rand.Read(b)
	return http.StatusOK, valueParams{Value: b64(b)}, false, nil
}
