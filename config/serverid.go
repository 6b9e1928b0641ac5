package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// ServerID returns this server's identifier: key_identifier_value, or the
// UUID kept in key_identifier_file. When the file does not exist and create is
// true, a new UUID is written to it atomically with mode 0600; when create is
// false (Validate), the empty string is returned and nothing is written. A
// file holding anything but a UUID is an error and is never overwritten.
//
// An ID read from the file is checked against the backend's rules
// (ServerIDChecker) here, where it is first known, so that Validate reports
// what Open would refuse; key_identifier_value was checked by Parse.
func (c *Config) ServerID(create bool) (string, error) {
	if v := c.Common.KeyIdentifierValue; v != "" {
		return v, nil
	}
	path := c.Common.KeyIdentifierFile
	id, err := readOrCreateID(path, create)
	if err != nil || id == "" {
		return id, err
	}
	if err := c.checkServerID(id); err != nil {
		return "", fmt.Errorf("key_identifier_file %s holds the server ID %s, which %s cannot use: %w; point key_identifier_file at another file or set key_identifier_value", path, id, c.Kind.Name, err)
	}
	return id, nil
}

// checkServerID applies the backend's server ID rules, if it has any, then
// the rules every server ID follows (checkServerIDText): the backend's
// reason, where it has one, says more.
func (c *Config) checkServerID(id string) error {
	if sc, ok := c.Backend.(ServerIDChecker); ok {
		if err := sc.CheckServerID(id); err != nil {
			return err
		}
	}
	return checkServerIDText(id)
}

// checkServerIDText refuses a server ID that no backend keeps exactly. The
// ID is written into every key's tags or labels (and the memory backend's
// JSON state) and compared byte for byte with what a listing reads back: text
// that is not valid UTF-8 comes back with U+FFFD in place of the bad bytes;
// white space at either end is what a template or a copy-and-paste adds, and
// Key Vault's listing skips such tags; a control character is never meant
// and makes every message that names the ID unreadable. Any other text is
// kept as is.
func checkServerIDText(id string) error {
	const allowed = "a server ID may hold any printable characters, spaces inside it included, but no control characters and no white space at either end"
	switch {
	case !utf8.ValidString(id):
		return fmt.Errorf("it is not valid UTF-8 text, and tags and labels would store it altered; %s", allowed)
	case strings.TrimSpace(id) != id:
		return fmt.Errorf("it begins or ends with white space (a template's or a copy and paste's, usually), and a listing that skips or trims such tags, as Key Vault's does, would not find this server's keys again; %s", allowed)
	case strings.ContainsFunc(id, unicode.IsControl):
		return fmt.Errorf("it holds a control character (a tab, a line break or another invisible one); %s", allowed)
	}
	return nil
}

func readOrCreateID(path string, create bool) (string, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseID(path, data)
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("reading key_identifier_file %s: %w", path, err)
	case !create:
		return "", nil
	}
	id := uuid.NewString()
	if err := writeNew(path, []byte(id+"\n")); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created it first: use its ID.
			return readOrCreateID(path, false)
		}
		return "", fmt.Errorf("creating key_identifier_file %s: %w", path, err)
	}
	return id, nil
}

func parseID(path string, data []byte) (string, error) {
	s := strings.TrimSpace(string(data))
	u, err := uuid.Parse(s)
	if err != nil || u.String() != strings.ToLower(s) {
		return "", fmt.Errorf("key_identifier_file %s does not hold a UUID (it holds %d bytes); it is never overwritten: fix or remove it, or point key_identifier_file elsewhere", path, len(data))
	}
	return u.String(), nil
}

// writeNew writes data to path atomically and only if path does not exist:
// the data goes to a temporary file in the same directory, is synced, and is
// then linked into place (link fails if the name is taken).
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".kmskeeper-id-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
