package penguinmails

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/crypto/ssh"
)

const sshPath = "ssh/tenant-1/admin"

// download reads the private key; passphrase "" asks for it unencrypted.
func (env *testEnv) download(path, passphrase string) map[string]interface{} {
	env.t.Helper()
	var data map[string]interface{}
	if passphrase != "" {
		data = map[string]interface{}{"passphrase": passphrase}
	}
	return env.ok(logical.UpdateOperation, path+"/private", data)
}

// refused runs a request that must fail with the given HTTP status and
// returns the message.
func (env *testEnv) refused(op logical.Operation, path string, data map[string]interface{}, status int) string {
	env.t.Helper()
	resp, err := env.do(op, path, data)
	if code := statusOf(op, resp, err); code != status {
		env.t.Fatalf("%s %s: status %d (resp %v, err %v), want %d", op, path, code, resp, err, status)
	}
	if err != nil {
		return err.Error()
	}
	return resp.Error().Error()
}

// assertNoPrivateKey fails when any string in data, however nested, holds a
// private key.
func assertNoPrivateKey(t *testing.T, what string, data interface{}) {
	t.Helper()
	if s := fmt.Sprint(data); strings.Contains(s, "PRIVATE KEY") {
		t.Fatalf("%s contains a private key: %s", what, s)
	}
}

func TestSSH_GeneratesEveryKeyType(t *testing.T) {
	cases := []struct {
		keyType, algo string
		bits          int
	}{
		{"ed25519", ssh.KeyAlgoED25519, 256},
		{"rsa-4096", ssh.KeyAlgoRSA, 4096},
		{"rsa-3072", ssh.KeyAlgoRSA, 3072},
		{"ecdsa-p256", ssh.KeyAlgoECDSA256, 256},
		{"ecdsa-p384", ssh.KeyAlgoECDSA384, 384},
		{"ecdsa-p521", ssh.KeyAlgoECDSA521, 521},
	}
	for _, tc := range cases {
		t.Run(tc.keyType, func(t *testing.T) {
			env := newTestEnv(t)
			written := env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"key_type": tc.keyType})
			assertNoPrivateKey(t, "write response", written)

			got := env.ok(logical.ReadOperation, sshPath, nil)
			assertNoPrivateKey(t, "read", got)
			if got["key_type"] != tc.keyType || got["key_bits"] != tc.bits || got["version"] != 1 || got["status"] != statusActive {
				t.Fatalf("read: key_type %v, key_bits %v, version %v, status %v", got["key_type"], got["key_bits"], got["version"], got["status"])
			}
			line := got["public_key"].(string)
			pub := parsePublic(t, line)
			if pub.Type() != tc.algo {
				t.Fatalf("public key type %s, want %s", pub.Type(), tc.algo)
			}
			keygenBits, keygenFP := keygenFingerprint(t, line)
			if got["fingerprint"] != keygenFP || keygenFP != ssh.FingerprintSHA256(pub) || !strings.HasPrefix(keygenFP, "SHA256:") {
				t.Fatalf("fingerprint %v, ssh-keygen -lf says %s", got["fingerprint"], keygenFP)
			}
			if keygenBits != fmt.Sprint(tc.bits) {
				t.Fatalf("ssh-keygen -lf says %s bits, want %d", keygenBits, tc.bits)
			}

			plain := env.download(sshPath, "")
			if plain["encrypted"] != false || !strings.Contains(plain["private_key"].(string), "BEGIN OPENSSH PRIVATE KEY") {
				t.Fatalf("download: encrypted %v, key in OpenSSH format: %v", plain["encrypted"], strings.Contains(plain["private_key"].(string), "OPENSSH"))
			}
			derived, err := keygenPublicOf(t, plain["private_key"].(string), "")
			if err != nil || !samePublicKey(derived, pub) {
				t.Fatalf("ssh-keygen -y on the downloaded key: %v (same public key: %v)", err, err == nil && samePublicKey(derived, pub))
			}

			const pass = "correct horse battery"
			enc := env.download(sshPath, pass)
			if enc["encrypted"] != true {
				t.Fatal("download with a passphrase is not marked encrypted")
			}
			if _, err := keygenPublicOf(t, enc["private_key"].(string), "wrong passphrase"); err == nil {
				t.Fatal("ssh-keygen opened the encrypted key with a wrong passphrase: it is not encrypted")
			}
			derived, err = keygenPublicOf(t, enc["private_key"].(string), pass)
			if err != nil || !samePublicKey(derived, pub) {
				t.Fatalf("ssh-keygen -y -P on the encrypted key: %v", err)
			}

			rot := env.ok(logical.UpdateOperation, sshPath+"/rotate", map[string]interface{}{"reason": "test"})
			next := env.ok(logical.ReadOperation, sshPath, nil)
			if rot["version"] != 2 || next["key_type"] != tc.keyType || next["fingerprint"] == got["fingerprint"] {
				t.Fatalf("rotation: version %v, key_type %v, fingerprint changed: %v", rot["version"], next["key_type"], next["fingerprint"] != got["fingerprint"])
			}
			if strings.Contains(env.logs.String(), "PRIVATE KEY") || strings.Contains(env.logs.String(), pass) {
				t.Fatal("the log holds a private key or a passphrase")
			}
		})
	}
}

func TestSSH_DefaultsToEd25519With90DayRotation(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	got := env.ok(logical.ReadOperation, sshPath, nil)
	want := map[string]interface{}{
		"key_type": "ed25519", "rotation_period": "2160h", "alert_threshold": "336h",
		"last_rotated": "2026-11-01T09:00:00Z", "next_rotation": "2027-01-30T09:00:00Z",
		"rotation_status": rotationHealthy, "download_count": 0, "last_downloaded": "",
		"last_downloaded_by": map[string]interface{}(nil),
		"one_time_download":  false, "private_key_downloadable": true, "imported": false,
	}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("read %s = %#v, want %#v", k, got[k], v)
		}
	}
	if !strings.HasSuffix(got["public_key"].(string), " penguinmails:ssh/tenant-1/admin:v1") {
		t.Errorf("public key line %q does not name the secret and version", got["public_key"])
	}
	env.clock.Advance(76*day + time.Hour) // 13 days and 23 hours before next_rotation
	if s := env.ok(logical.ReadOperation, sshPath, nil)["rotation_status"]; s != rotationDueSoon {
		t.Errorf("14 days before rotation: rotation_status %v, want %s", s, rotationDueSoon)
	}
}

func TestSSH_RefusesBadKeyTypes(t *testing.T) {
	for _, kt := range []string{"rsa-2048", "rsa-1024", "rsa-3071"} {
		env := newTestEnv(t)
		msg := env.badRequest(logical.UpdateOperation, sshPath, map[string]interface{}{"key_type": kt})
		if !strings.Contains(msg, "key_type") || !strings.Contains(msg, "at least 3072 bits") {
			t.Errorf("%s: message %q does not name key_type and the RSA minimum", kt, msg)
		}
		if keys := env.storedKeys(); len(keys) != 0 {
			t.Errorf("%s: stored %v", kt, keys)
		}
	}
	env := newTestEnv(t)
	msg := env.badRequest(logical.UpdateOperation, sshPath, map[string]interface{}{"key_type": "dsa"})
	if !strings.Contains(msg, "key_type") || !strings.Contains(msg, "ed25519, rsa-4096") {
		t.Errorf("unknown key_type: message %q does not list the valid ones", msg)
	}
	msg = env.badRequest(logical.UpdateOperation, sshPath, map[string]interface{}{"passphrase": "x"})
	if !strings.Contains(msg, "passphrase is only used together with private_key") {
		t.Errorf("passphrase without a key: %q", msg)
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Errorf("stored %v", keys)
	}
}

func TestSSH_ImportsOpenSSHAndPEMKeys(t *testing.T) {
	cases := []struct {
		name, passphrase, keyType, header string
		args                              []string
	}{
		{"openssh ed25519", "", "ed25519", "OPENSSH PRIVATE KEY", []string{"-t", "ed25519"}},
		{"openssh ed25519 encrypted", "imp0rt-pass", "ed25519", "OPENSSH PRIVATE KEY", []string{"-t", "ed25519"}},
		{"openssh ecdsa-p521 encrypted", "imp0rt-pass", "ecdsa-p521", "OPENSSH PRIVATE KEY", []string{"-t", "ecdsa", "-b", "521"}},
		{"pem pkcs1 rsa", "", "rsa-3072", "RSA PRIVATE KEY", []string{"-t", "rsa", "-b", "3072", "-m", "PEM"}},
		{"pem pkcs1 rsa encrypted", "imp0rt-pass", "rsa-3072", "RSA PRIVATE KEY", []string{"-t", "rsa", "-b", "3072", "-m", "PEM"}},
		{"pem pkcs8 ecdsa", "", "ecdsa-p384", "BEGIN PRIVATE KEY", []string{"-t", "ecdsa", "-b", "384", "-m", "PKCS8"}},
		{"pem sec1 ecdsa encrypted", "imp0rt-pass", "ecdsa-p256", "EC PRIVATE KEY", []string{"-t", "ecdsa", "-b", "256", "-m", "PEM"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			priv, pub := keygenPair(t, tc.passphrase, tc.args...)
			if !strings.Contains(priv, tc.header) {
				t.Fatalf("ssh-keygen did not write a %s file:\n%.60s", tc.header, priv)
			}
			env := newTestEnv(t)
			in := map[string]interface{}{"private_key": priv, "public_key": pub}
			if tc.passphrase != "" {
				in["passphrase"] = tc.passphrase
			}
			assertNoPrivateKey(t, "import response", env.ok(logical.UpdateOperation, sshPath, in))

			got := env.ok(logical.ReadOperation, sshPath, nil)
			_, keygenFP := keygenFingerprint(t, pub)
			if got["key_type"] != tc.keyType || got["fingerprint"] != keygenFP || got["imported"] != true {
				t.Fatalf("read: key_type %v, fingerprint %v (ssh-keygen: %s), imported %v", got["key_type"], got["fingerprint"], keygenFP, got["imported"])
			}
			derived, err := keygenPublicOf(t, env.download(sshPath, "")["private_key"].(string), "")
			if err != nil || !samePublicKey(derived, parsePublic(t, pub)) {
				t.Fatalf("downloaded key is not the imported one: %v", err)
			}

			env.ok(logical.UpdateOperation, sshPath+"/rotate", nil)
			next := env.ok(logical.ReadOperation, sshPath, nil)
			if next["key_type"] != tc.keyType || next["imported"] != false || next["fingerprint"] == keygenFP {
				t.Fatalf("rotating an imported key: key_type %v, imported %v, new fingerprint %v", next["key_type"], next["imported"], next["fingerprint"] != keygenFP)
			}
			if strings.Contains(env.logs.String(), "PRIVATE KEY") || strings.Contains(env.logs.String(), "imp0rt-pass") {
				t.Fatal("the log holds a private key or a passphrase")
			}
		})
	}
}

func TestSSH_RefusesBadImportsAndStoresNothing(t *testing.T) {
	encrypted, _ := keygenPair(t, "right-pass", "-t", "ed25519")
	encryptedPEM, _ := keygenPair(t, "right-pass", "-t", "ecdsa", "-m", "PEM")
	_, otherPub := keygenPair(t, "", "-t", "ed25519")
	rsa2048, rsa2048Pub := keygenPair(t, "", "-t", "rsa", "-b", "2048")
	pkcs8Encrypted, _ := keygenPair(t, "right-pass", "-t", "ecdsa", "-m", "PKCS8")
	plain, plainPub := keygenPair(t, "", "-t", "ed25519")
	// Cut inside the base64 body: the armour is intact, the key is not.
	truncated := plain[:len(plain)/2] + "\n-----END OPENSSH PRIVATE KEY-----\n"

	cases := []struct {
		name    string
		in      map[string]interface{}
		mention []string
	}{
		{"wrong passphrase", map[string]interface{}{"private_key": encrypted, "passphrase": "wrong-pass"}, []string{"passphrase is wrong"}},
		{"wrong passphrase pem", map[string]interface{}{"private_key": encryptedPEM, "passphrase": "wrong-pass"}, []string{"passphrase is wrong"}},
		{"missing passphrase", map[string]interface{}{"private_key": encrypted}, []string{"passphrase is required"}},
		{"garbage", map[string]interface{}{"private_key": "this is not a key"}, []string{"private_key does not parse"}},
		{"truncated", map[string]interface{}{"private_key": truncated}, []string{"private_key does not parse"}},
		{"empty", map[string]interface{}{"private_key": " "}, []string{"private_key is empty"}},
		{"mismatching public_key", map[string]interface{}{"private_key": encrypted, "passphrase": "right-pass", "public_key": otherPub}, []string{"public_key does not match private_key"}},
		{"unparsable public_key", map[string]interface{}{"private_key": plain, "public_key": "ssh-ed25519 !!!"}, []string{"public_key does not parse"}},
		{"rsa-2048", map[string]interface{}{"private_key": rsa2048, "public_key": rsa2048Pub}, []string{"2048-bit RSA", "3072"}},
		{"key_type mismatch", map[string]interface{}{"private_key": plain, "public_key": plainPub, "key_type": "rsa-4096"}, []string{"key_type", "ed25519"}},
		{"encrypted pkcs8", map[string]interface{}{"private_key": pkcs8Encrypted, "passphrase": "right-pass"}, []string{"encrypted PKCS#8"}},
		{"passphrase too long", map[string]interface{}{"private_key": encrypted, "passphrase": strings.Repeat("p", 1025)}, []string{"passphrase is too long"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			msg := env.badRequest(logical.UpdateOperation, sshPath, tc.in)
			for _, m := range tc.mention {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not mention %q", msg, m)
				}
			}
			if strings.Contains(msg, "PRIVATE") || strings.Contains(msg, "-pass") {
				t.Errorf("message %q quotes the key or the passphrase", msg)
			}
			if keys := env.storedKeys(); len(keys) != 0 {
				t.Errorf("a refused import stored %v", keys)
			}

			// On an existing key, the same request changes nothing.
			env.ok(logical.UpdateOperation, sshPath, nil)
			before, _ := env.storage.Get(context.Background(), secretStorageKey("ssh", "tenant-1", "admin"))
			env.badRequest(logical.UpdateOperation, sshPath, tc.in)
			after, _ := env.storage.Get(context.Background(), secretStorageKey("ssh", "tenant-1", "admin"))
			if string(before.Value) != string(after.Value) {
				t.Error("a refused import changed the stored key")
			}
		})
	}
}

func TestSSH_UpdateSemantics(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	v1 := env.ok(logical.ReadOperation, sshPath, nil)

	// Settings, or the key_type it already has: no new key.
	env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"one_time_download": true, "key_type": "ed25519"})
	got := env.ok(logical.ReadOperation, sshPath, nil)
	if got["version"] != 1 || got["one_time_download"] != true || got["fingerprint"] != v1["fingerprint"] {
		t.Fatalf("settings-only update: version %v, one_time_download %v", got["version"], got["one_time_download"])
	}

	// A different key_type: a new key of that type now; the old one in grace.
	env.clock.Advance(time.Minute)
	env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"key_type": "ecdsa-p256"})
	got = env.ok(logical.ReadOperation, sshPath, nil)
	if got["version"] != 2 || got["key_type"] != "ecdsa-p256" || got["last_rotated"] != "2026-11-01T09:01:00Z" {
		t.Fatalf("key_type change: %v %v %v", got["version"], got["key_type"], got["last_rotated"])
	}
	if old := got["versions"].(map[string]interface{})["1"].(map[string]interface{}); old["status"] != statusGrace || old["grace_until"] != "2026-11-02T09:01:00Z" {
		t.Fatalf("replaced key: %v", old)
	}

	// Importing on update: the next version, recorded as a write.
	priv, pub := keygenPair(t, "", "-t", "ed25519")
	env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"private_key": priv, "public_key": pub})
	got = env.ok(logical.ReadOperation, sshPath, nil)
	if got["version"] != 3 || got["imported"] != true || !samePublicKey(parsePublic(t, got["public_key"].(string)), parsePublic(t, pub)) {
		t.Fatalf("import on update: version %v imported %v", got["version"], got["imported"])
	}
	// The same key again (an idempotent re-apply): no new version.
	env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"private_key": priv})
	if v := env.ok(logical.ReadOperation, sshPath, nil)["version"]; v != 3 {
		t.Fatalf("re-importing the current key made version %v", v)
	}
	hist := env.ok(logical.ReadOperation, sshPath+"/history", nil)["history"].([]interface{})
	if len(hist) != 2 || hist[0].(map[string]interface{})["operation"] != "write" || hist[0].(map[string]interface{})["to_version"] != 3 {
		t.Fatalf("history after two key-changing writes: %v", hist)
	}
}

func TestSSH_DownloadsAreCountedAndRecorded(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	env.clock.Advance(time.Hour)
	first := env.download(sshPath, "")
	env.clock.Advance(time.Hour)
	second := env.ok(logical.UpdateOperation, sshPath+"/private", map[string]interface{}{"passphrase": "in-the-body"})
	if first["download_count"] != 1 || second["download_count"] != 2 || second["encrypted"] != true || second["version"] != 1 {
		t.Fatalf("download responses: %v / %v", first["download_count"], second["download_count"])
	}

	got := env.ok(logical.ReadOperation, sshPath, nil)
	if got["download_count"] != 2 || got["version_download_count"] != 2 || got["last_downloaded"] != "2026-11-01T11:00:00Z" {
		t.Fatalf("read after two downloads: count %v, last %v", got["download_count"], got["last_downloaded"])
	}
	by := got["last_downloaded_by"].(map[string]interface{})
	if by["display_name"] != "token-tester" || by["entity_id"] != "entity-1234" {
		t.Fatalf("last_downloaded_by %v", by)
	}
	// Downloads are access records, kept apart from the rotation history.
	logs := env.ok(logical.ReadOperation, sshPath+"/history", nil)
	if hist := logs["history"].([]interface{}); len(hist) != 0 {
		t.Fatalf("rotation history has %d entries after two downloads, want none: %v", len(hist), hist)
	}
	access := logs["access"].([]interface{})
	if len(access) != 2 {
		t.Fatalf("access has %d entries, want 2 downloads", len(access))
	}
	for i, want := range []string{"2026-11-01T11:00:00Z", "2026-11-01T10:00:00Z"} {
		h := access[i].(map[string]interface{})
		if h["operation"] != "download" || h["time"] != want || h["to_version"] != 1 ||
			h["actor"].(map[string]interface{})["entity_id"] != "entity-1234" {
			t.Errorf("access[%d] = %v", i, h)
		}
	}
	assertNoPrivateKey(t, "access", access)

	// A download is a write: it must reach the active node.
	p := env.b.Route(sshPath + "/private")
	if props := p.Operations[logical.UpdateOperation].Properties(); !props.ForwardPerformanceStandby || !props.ForwardPerformanceSecondary {
		t.Fatal("the private-key download does not forward to the active node")
	}
	msg := env.refused(logical.UpdateOperation, "ssh/tenant-1/missing/private", nil, 404)
	if !strings.Contains(msg, "ssh/tenant-1/missing") {
		t.Fatalf("download of a missing key answered %q, want the path named", msg)
	}
}

// Export is one capability: update on .../private. A read is no operation
// of the path (Vault answers 405), so read-only policies grant no download.
func TestSSH_PrivateKeyIsUpdateOnly(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	env.refused(logical.ReadOperation, sshPath+"/private", nil, 405)
	if p := env.b.Route(sshPath + "/private"); p.Fields["passphrase"].Query {
		t.Fatal("passphrase is still a query parameter")
	}
	if env.download(sshPath, "")["version"] != 1 {
		t.Fatal("download by update failed")
	}
}

// One download of a version while one_time_download was on locks that
// version for good; switching the flag off does not unlock it, only a new
// version is downloadable again.
func TestSSH_OneTimeDownloadCannotBeSwitchedOffToDownloadAgain(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"one_time_download": true})
	env.download(sshPath, "")
	env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"one_time_download": false})
	msg := env.refused(logical.UpdateOperation, sshPath+"/private", nil, 409)
	if !strings.Contains(msg, "one_time_download") || !strings.Contains(msg, "rotate") {
		t.Fatalf("download after switching the flag off refused with %q", msg)
	}
	if got := env.ok(logical.ReadOperation, sshPath, nil); got["private_key_downloadable"] != false {
		t.Fatal("read says the locked version is downloadable")
	}
	env.ok(logical.UpdateOperation, sshPath+"/rotate", nil)
	env.download(sshPath, "")
	env.download(sshPath, "") // flag off, version 2 never locked
}

func TestSSH_OneTimeDownload(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"one_time_download": true})
	env.download(sshPath, "")
	before, _ := env.storage.Get(context.Background(), secretStorageKey("ssh", "tenant-1", "admin"))

	msg := env.refused(logical.UpdateOperation, sshPath+"/private", nil, 409)
	if !strings.Contains(msg, "already downloaded") || !strings.Contains(msg, "rotate") {
		t.Fatalf("second download refused with %q", msg)
	}
	after, _ := env.storage.Get(context.Background(), secretStorageKey("ssh", "tenant-1", "admin"))
	if string(before.Value) != string(after.Value) {
		t.Fatal("a refused download changed the stored secret")
	}
	if got := env.ok(logical.ReadOperation, sshPath, nil); got["private_key_downloadable"] != false || got["download_count"] != 1 {
		t.Fatalf("after the one download: downloadable %v, count %v", got["private_key_downloadable"], got["download_count"])
	}

	env.ok(logical.UpdateOperation, sshPath+"/rotate", map[string]interface{}{"reason": "new download"})
	if got := env.download(sshPath, ""); got["version"] != 2 || got["version_download_count"] != 1 {
		t.Fatalf("download after rotation: %v", got)
	}
	env.refused(logical.UpdateOperation, sshPath+"/private", nil, 409)
}

func TestSSH_AuthorizedKeysFollowGraceFromConfig(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"ssh_grace_period": "2h"})
	env.ok(logical.UpdateOperation, sshPath, nil)
	v1 := env.ok(logical.ReadOperation, sshPath, nil)["public_key"].(string)
	env.ok(logical.UpdateOperation, sshPath+"/rotate", nil)
	v2 := env.ok(logical.ReadOperation, sshPath, nil)["public_key"].(string)

	ak := env.ok(logical.ReadOperation, sshPath+"/authorized_keys", nil)
	if ak["authorized_keys"] != v2+"\n"+v1+"\n" {
		t.Fatalf("during grace authorized_keys = %q", ak["authorized_keys"])
	}
	keys := ak["keys"].([]interface{})
	if len(keys) != 2 || keys[1].(map[string]interface{})["status"] != statusGrace ||
		keys[1].(map[string]interface{})["valid_until"] != "2026-11-01T11:00:00Z" {
		t.Fatalf("keys during grace: %v", keys)
	}

	env.clock.Advance(2 * time.Hour)
	if ak := env.ok(logical.ReadOperation, sshPath+"/authorized_keys", nil); ak["authorized_keys"] != v2+"\n" {
		t.Fatalf("after grace authorized_keys = %q", ak["authorized_keys"])
	}
	if s := env.ok(logical.ReadOperation, sshPath, map[string]interface{}{"version": 1})["status"]; s != statusExpired {
		t.Fatalf("version 1 after grace: %v", s)
	}
}

func TestHistory_VersionStatusesFollowTheClock(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	env.ok(logical.UpdateOperation, sshPath+"/rotate", nil)
	env.clock.Advance(25 * time.Hour) // past the 24 h grace; no scheduler tick
	versions := env.ok(logical.ReadOperation, sshPath+"/history", nil)["versions"].(map[string]interface{})
	if s := versions["1"].(map[string]interface{})["status"]; s != statusExpired {
		t.Fatalf("history shows version 1 as %v after its grace ended, want %s (as a read shows)", s, statusExpired)
	}
}

func TestSSH_RefusesMultiPrimeRSAImport(t *testing.T) {
	env := newTestEnv(t)
	key, err := rsa.GenerateMultiPrimeKey(rand.Reader, 3, 3072) //nolint:staticcheck // the point of the test
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	// Stored, it would serialise to an OpenSSH key that no longer parses, and
	// every download would fail.
	msg := env.badRequest(logical.UpdateOperation, sshPath, map[string]interface{}{"private_key": pemText})
	if !strings.Contains(msg, "private_key") {
		t.Fatalf("multi-prime RSA import refused with %q", msg)
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Fatalf("refused import stored %v", keys)
	}
}
