package penguinmails

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
)

const dkimPath = "dkim/tenant-1/example.com"

// testMessage is a small RFC 5322 message with CRLF line ends.
const testMessage = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.org>\r\n" +
	"Subject: Quarterly numbers\r\n" +
	"Date: Sun, 01 Nov 2026 09:00:00 +0000\r\n" +
	"Message-ID: <20261101090000.1@example.com>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	"the numbers are attached.\r\n"

// signVia signs msg through the sign path and returns the signed message
// (the DKIM-Signature header put in front of msg, as a sender would).
func (env *testEnv) signVia(path, msg string, extra map[string]interface{}) string {
	env.t.Helper()
	in := map[string]interface{}{"message": base64.StdEncoding.EncodeToString([]byte(msg))}
	for k, v := range extra {
		in[k] = v
	}
	out := env.ok(logical.UpdateOperation, path+"/sign", in)
	header := out["dkim_signature"].(string)
	if !strings.HasPrefix(header, "DKIM-Signature: ") || !strings.HasSuffix(header, "\r\n") {
		env.t.Fatalf("sign returned %q, want a DKIM-Signature header field ending in CRLF", header)
	}
	return header + msg
}

// publishedTXT reads the dns path and returns the records to publish, as a
// resolver would serve them: name -> the TXT strings joined (RFC 6376 3.6.2.2).
// newImmediateDKIMEnv is a mount whose DKIM keys sign as soon as they are
// made (dkim_activation=immediate): the tests of the key life cycle after
// activation use it; staged activation has its own tests
// (dkim_activation_test.go).
func newImmediateDKIMEnv(t *testing.T) *testEnv {
	t.Helper()
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_activation": "immediate"})
	env.baseline = map[string]bool{configStoragePath: true}
	return env
}

func (env *testEnv) publishedTXT(path string) map[string]string {
	env.t.Helper()
	out := env.ok(logical.ReadOperation, path+"/dns", nil)
	txt := map[string]string{}
	for _, r := range out["publish"].([]interface{}) {
		rec := r.(map[string]interface{})
		strs := rec["txt_strings"].([]string)
		for _, s := range strs {
			if len(s) > 255 {
				env.t.Fatalf("TXT string of %d bytes in %s", len(s), rec["name"])
			}
		}
		if joined := strings.Join(strs, ""); joined != rec["value"] {
			env.t.Fatalf("txt_strings of %s do not join to its value", rec["name"])
		}
		txt[rec["name"].(string)] = strings.Join(strs, "")
	}
	return txt
}

func TestDKIM_WriteWithNoArgumentsGeneratesRSA2048(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	written := env.ok(logical.UpdateOperation, dkimPath, nil)
	for _, f := range []string{"private_key", "private_key_pem"} {
		if _, leaked := written[f]; leaked {
			t.Fatalf("write response has %s", f)
		}
	}
	want := map[string]interface{}{
		"domain": "example.com", "selector": "pm202611", "active_selector": "pm202611", "key_type": "rsa-2048",
		"record_name": "pm202611._domainkey.example.com", "version": 1, "status": statusActive, "exportable": true,
		"rotation_period": "8760h", "next_rotation": "2027-11-01T09:00:00Z",
	}
	for k, v := range want {
		if !reflect.DeepEqual(written[k], v) {
			t.Errorf("write answered %s = %#v, want %#v", k, written[k], v)
		}
	}
	txt := written["txt_value"].(string)
	if !strings.HasPrefix(txt, "v=DKIM1; k=rsa; p=") {
		t.Fatalf("txt_value %q", txt)
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(txt, "v=DKIM1; k=rsa; p="))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatalf("p= is not SubjectPublicKeyInfo DER: %v", err)
	}
	if bits := pub.(*rsa.PublicKey).N.BitLen(); bits != 2048 {
		t.Fatalf("RSA key of %d bits, want 2048", bits)
	}
	if strs := written["txt_strings"].([]string); len(strs) != 2 || len(strs[0]) != 255 || strs[0]+strs[1] != txt {
		t.Fatalf("a 2048-bit record must split into 255 + rest bytes, got %d strings", len(strs))
	}

	read := env.ok(logical.ReadOperation, dkimPath, nil)
	if read["txt_value"] != txt || read["public_key"] != written["public_key"] {
		t.Fatal("read shows another key than the write answered")
	}
	raw, _ := json.Marshal(read)
	if strings.Contains(string(raw), "PRIVATE KEY") {
		t.Fatal("read returns the private key")
	}
	index, rest := splitIndexKeys(env.storedKeys())
	if !reflect.DeepEqual(rest, []string{"dkim-domains/example.com", "secrets/dkim/tenant-1/example.com"}) {
		t.Fatalf("stored %v", rest)
	}
	// The due index: the secret's due and work keys and their day marker.
	env.wantIndexed("dkim", "tenant-1", "example.com")
	if len(index) != 3 {
		t.Fatalf("index keys %v, want a day marker, a due and a work key", index)
	}

	// The same write again changes nothing: no second key.
	env.ok(logical.UpdateOperation, dkimPath, nil)
	if v := env.ok(logical.ReadOperation, dkimPath, nil)["version"]; v != 1 {
		t.Fatalf("repeating the write made version %v", v)
	}
}

func TestDKIM_SignedMessagesVerifyAgainstPublishedRecord(t *testing.T) {
	for _, keyType := range []string{"rsa-2048", "rsa-4096", "ed25519"} {
		t.Run(keyType, func(t *testing.T) {
			env := newImmediateDKIMEnv(t)
			env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": keyType})
			records := env.publishedTXT(dkimPath)
			if len(records) != 1 {
				t.Fatalf("dns publishes %d records, want 1", len(records))
			}

			signed := env.signVia(dkimPath, testMessage, nil)
			if err := dkimcheck.Verify(records, signed); err != nil {
				t.Fatalf("signature does not verify: %v", err)
			}
			wantAlgo := map[string]string{"rsa-2048": "a=rsa-sha256", "rsa-4096": "a=rsa-sha256", "ed25519": "a=ed25519-sha256"}[keyType]
			sig := strings.SplitN(signed, "\r\n\r\n", 2)[0]
			for _, tag := range []string{wantAlgo, "c=relaxed/relaxed", "d=example.com", "s=pm202611"} {
				if !strings.Contains(sig, tag) {
					t.Errorf("signature lacks %s: %q", tag, sig)
				}
			}

			tamperedBody := strings.Replace(signed, "numbers are attached", "numbers are attacked", 1)
			if err := dkimcheck.Verify(records, tamperedBody); err == nil {
				t.Fatal("a changed body still verifies")
			}
			tamperedHeader := strings.Replace(signed, "Subject: Quarterly numbers", "Subject: Quarterly Numbers", 1)
			if err := dkimcheck.Verify(records, tamperedHeader); err == nil {
				t.Fatal("a changed Subject still verifies")
			}
		})
	}
}

func TestDKIM_SignHonoursHeadersAndCanonicalization(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	records := env.publishedTXT(dkimPath)

	signed := env.signVia(dkimPath, testMessage, map[string]interface{}{
		"headers": "from,subject", "canonicalization": "simple/simple"})
	if err := dkimcheck.Verify(records, signed); err != nil {
		t.Fatal(err)
	}
	sig := strings.SplitN(signed, "\r\n\r\n", 2)[0]
	if !strings.Contains(sig, "c=simple/simple") || !strings.Contains(sig, "h=from:subject") {
		t.Fatalf("signature %q ignores headers or canonicalization", sig)
	}
	// To is not signed, so changing it keeps the signature valid; with
	// simple body canonicalization an added space breaks it.
	if err := dkimcheck.Verify(records, strings.Replace(signed, "To: Bob", "To: Robert", 1)); err != nil {
		t.Fatalf("an unsigned header change broke the signature: %v", err)
	}
	if err := dkimcheck.Verify(records, strings.Replace(signed, "Hello Bob,", "Hello  Bob,", 1)); err == nil {
		t.Fatal("simple body canonicalization accepted an added space")
	}

	// Relaxed body canonicalization (the default) ignores that change, and
	// a message with bare LF line ends is signed as it will travel (CRLF).
	lf := strings.ReplaceAll(testMessage, "\r\n", "\n")
	signedLF := env.signVia(dkimPath, lf, nil)
	if err := dkimcheck.Verify(records, strings.Replace(signedLF, "Hello Bob,", "Hello  Bob,", 1)); err != nil {
		t.Fatalf("relaxed body: %v", err)
	}
}

func TestDKIM_SignRejectsBadInput(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	good := base64.StdEncoding.EncodeToString([]byte(testMessage))
	cases := []struct {
		name    string
		in      map[string]interface{}
		mention string
	}{
		{"missing message", map[string]interface{}{}, "message"},
		{"not base64", map[string]interface{}{"message": "%%%not base64"}, "message"},
		{"no header end", map[string]interface{}{"message": base64.StdEncoding.EncodeToString([]byte("From: a@example.com"))}, "message"},
		{"headers without From", map[string]interface{}{"message": good, "headers": "to,subject"}, "From"},
		{"header name with colon", map[string]interface{}{"message": good, "headers": "from,x:y"}, "headers"},
		{"unknown canonicalization", map[string]interface{}{"message": good, "canonicalization": "loose/relaxed"}, "canonicalization"},
		{"three canonicalizations", map[string]interface{}{"message": good, "canonicalization": "simple/simple/simple"}, "canonicalization"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := env.badRequest(logical.UpdateOperation, dkimPath+"/sign", tc.in)
			if !strings.Contains(msg, tc.mention) {
				t.Fatalf("message %q does not mention %q", msg, tc.mention)
			}
		})
	}
	resp, err := env.do(logical.UpdateOperation, "dkim/tenant-1/other.example/sign", map[string]interface{}{"message": good})
	if code := statusOf(logical.UpdateOperation, resp, err); code != 404 {
		t.Fatalf("sign with no key: status %d, want 404", code)
	}
}

func TestDKIM_SignWritesNothing(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	before := env.storageSnapshot()
	env.signVia(dkimPath, testMessage, nil)
	env.badRequest(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"message": "!"})
	if after := env.storageSnapshot(); !reflect.DeepEqual(before, after) {
		t.Fatal("sign changed storage")
	}
}

// storageSnapshot returns every stored key with its value.
func (env *testEnv) storageSnapshot() map[string]string {
	env.t.Helper()
	out := map[string]string{}
	for _, k := range env.storedKeys() {
		e, err := env.storage.Get(context.Background(), k)
		if err != nil {
			env.t.Fatal(err)
		}
		out[k] = string(e.Value)
	}
	return out
}

func TestDKIM_PrivateKeyParsesAndMatchesPublishedKey(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required for this test")
	}
	for _, keyType := range []string{"rsa-2048", "ed25519"} {
		t.Run(keyType, func(t *testing.T) {
			env := newImmediateDKIMEnv(t)
			env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": keyType})
			published := env.ok(logical.ReadOperation, dkimPath, nil)["public_key"].(string)
			out := env.ok(logical.UpdateOperation, dkimPath+"/private", nil)
			pemText := out["private_key"].(string)
			if out["selector"] != "pm202611" || out["key_type"] != keyType {
				t.Fatalf("private answered %v / %v", out["selector"], out["key_type"])
			}

			// The Go standard library.
			key, err := dkimcheck.ParsePrivateKey(pemText)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := dkimcheck.PublicKeyTag(key.Public()); err != nil || got != published {
				t.Fatalf("the stdlib-parsed private key does not match the published public key (%v)", err)
			}

			// openssl, a separate implementation.
			file := filepath.Join(t.TempDir(), "dkim.pem")
			if err := os.WriteFile(file, []byte(pemText), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("openssl", "pkey", "-in", file, "-pubout")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			pubPEM, err := cmd.Output()
			if err != nil {
				t.Fatalf("openssl pkey: %v: %s", err, stderr.String())
			}
			pubBlock, _ := pem.Decode(pubPEM)
			if pubBlock == nil {
				t.Fatalf("openssl printed no PEM public key: %q", pubPEM)
			}
			spki := pubBlock.Bytes
			want := base64.StdEncoding.EncodeToString(spki)
			if keyType == "ed25519" {
				want = base64.StdEncoding.EncodeToString(spki[len(spki)-ed25519.PublicKeySize:])
			}
			if want != published {
				t.Fatal("openssl's public key does not match the published one")
			}
		})
	}
}

func TestDKIM_NonExportableKeyCanSignButNeverBeExported(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519", "exportable": false})
	msg := env.badRequest(logical.UpdateOperation, dkimPath+"/private", nil)
	if !strings.Contains(msg, "exportable=false") {
		t.Fatalf("message %q", msg)
	}
	if err := dkimcheck.Verify(env.publishedTXT(dkimPath), env.signVia(dkimPath, testMessage, nil)); err != nil {
		t.Fatal(err)
	}
	msg = env.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"exportable": true})
	if !strings.Contains(msg, "exportable") {
		t.Fatalf("message %q", msg)
	}
	// Rotation keeps the setting: the new key is not exportable either.
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "test"})
	env.badRequest(logical.UpdateOperation, dkimPath+"/private", nil)
	if got := env.ok(logical.ReadOperation, dkimPath, nil)["exportable"]; got != false {
		t.Fatalf("exportable after rotation = %v", got)
	}

	// An exportable key can be made non-exportable, for good.
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.org", map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.org/private", nil)
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.org", map[string]interface{}{"exportable": false})
	env.badRequest(logical.UpdateOperation, "dkim/tenant-1/example.org/private", nil)
	if logs := env.logs.String(); strings.Contains(logs, "PRIVATE KEY") {
		t.Fatal("a private key appears in the plugin log")
	}
}

// storedDKIMVersion decodes one version's material straight from storage.
func (env *testEnv) storedDKIMVersion(tenant, domain string, version int) (secretVersion, dkimMaterial) {
	env.t.Helper()
	raw, err := env.storage.Get(context.Background(), secretStorageKey("dkim", tenant, domain))
	if err != nil || raw == nil {
		env.t.Fatalf("reading storage: %v", err)
	}
	var e secretEntry
	if err := json.Unmarshal(raw.Value, &e); err != nil {
		env.t.Fatal(err)
	}
	v := e.version(version)
	if v == nil {
		env.t.Fatalf("version %d not stored", version)
	}
	var m dkimMaterial
	if err := json.Unmarshal(v.Material, &m); err != nil {
		env.t.Fatal(err)
	}
	return *v, m
}

func TestDKIM_RotationGraceThenRetirement(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, nil)
	oldSigned := env.signVia(dkimPath, testMessage, nil)

	env.clock.Advance(time.Hour)
	rot := env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "yearly", "incident_id": "INC-7"})
	if rot["version"] != 2 {
		t.Fatalf("rotate answered %v", rot)
	}
	cur := env.ok(logical.ReadOperation, dkimPath, nil)
	if cur["selector"] != "pm202611-2" || cur["key_type"] != "rsa-2048" || cur["active_selector"] != "pm202611-2" {
		t.Fatalf("after rotation: selector %v, key_type %v", cur["selector"], cur["key_type"])
	}
	v1 := cur["versions"].(map[string]interface{})["1"].(map[string]interface{})
	if v1["status"] != dkimStatusRetiring || v1["selector"] != "pm202611" || v1["grace_until"] != "2026-11-03T10:00:00Z" {
		t.Fatalf("version 1 during grace: %v", v1)
	}

	// During the grace period both keys are published and both verify.
	env.clock.Advance(47 * time.Hour)
	env.tick()
	records := env.publishedTXT(dkimPath)
	if len(records) != 2 {
		t.Fatalf("during grace %d records to publish, want 2", len(records))
	}
	newSigned := env.signVia(dkimPath, testMessage, nil)
	if !strings.Contains(newSigned, "s=pm202611-2;") {
		t.Fatal("sign after rotation did not use the new selector")
	}
	for name, signed := range map[string]string{"old key": oldSigned, "new key": newSigned} {
		if err := dkimcheck.Verify(records, signed); err != nil {
			t.Fatalf("%s during grace: %v", name, err)
		}
	}
	if _, m := env.storedDKIMVersion("tenant-1", "example.com", 1); m.PrivateKey == "" {
		t.Fatal("the old private key was destroyed before the grace period ended")
	}
	env.ok(logical.UpdateOperation, dkimPath+"/private", map[string]interface{}{"version": 1})

	// After it: the old selector is no longer to publish, its private key
	// is gone from storage, its public part stays.
	env.clock.Advance(time.Hour + time.Minute)
	env.tick()
	v, m := env.storedDKIMVersion("tenant-1", "example.com", 1)
	if m.PrivateKey != "" || v.Status != dkimStatusRetired {
		t.Fatalf("after grace: stored status %q, private key present %v", v.Status, m.PrivateKey != "")
	}
	if m.PublicKey == "" || m.Selector != "pm202611" {
		t.Fatal("the retired version lost its public part")
	}
	records = env.publishedTXT(dkimPath)
	if _, still := records["pm202611._domainkey.example.com"]; still || len(records) != 1 {
		t.Fatalf("after grace, publish holds %v", records)
	}
	if err := dkimcheck.Verify(records, oldSigned); err == nil {
		t.Fatal("the old selector still verifies from the published records")
	}
	if err := dkimcheck.Verify(records, newSigned); err != nil {
		t.Fatal(err)
	}
	// The ended key's record is listed as revoked (p= empty) for
	// dkim_revocation_period (7 days), then for removal.
	dns := env.ok(logical.ReadOperation, dkimPath+"/dns", nil)
	revoke := dns["revoke"].([]interface{})
	if len(revoke) != 1 || revoke[0].(map[string]interface{})["name"] != "pm202611._domainkey.example.com" ||
		revoke[0].(map[string]interface{})["value"] != dkimkey.RevokedTXTValue || len(dns["remove"].([]interface{})) != 0 {
		t.Fatalf("revoke = %v, remove = %v", revoke, dns["remove"])
	}
	env.clock.Advance(7 * day)
	dns = env.ok(logical.ReadOperation, dkimPath+"/dns", nil)
	remove := dns["remove"].([]interface{})
	if len(remove) != 1 || remove[0].(map[string]interface{})["name"] != "pm202611._domainkey.example.com" || len(dns["revoke"].([]interface{})) != 0 {
		t.Fatalf("after the revocation period: remove = %v, revoke = %v", remove, dns["revoke"])
	}
	resp, err := env.do(logical.UpdateOperation, dkimPath+"/private", map[string]interface{}{"version": 1})
	if code := statusOf(logical.UpdateOperation, resp, err); code != 404 {
		t.Fatalf("private of a retired version: status %d, want 404", code)
	}
	h := env.ok(logical.ReadOperation, dkimPath+"/history", nil)["history"].([]interface{})[0].(map[string]interface{})
	if h["trigger"] != triggerEvent || h["incident_id"] != "INC-7" || h["to_version"] != 2 {
		t.Fatalf("history %v", h)
	}
}

func TestDKIM_ReadsFollowTheClockBeforeTheSchedulerRuns(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
	env.clock.Advance(49 * time.Hour) // no tick
	v1 := env.ok(logical.ReadOperation, dkimPath, nil)["versions"].(map[string]interface{})["1"].(map[string]interface{})
	if v1["status"] != dkimStatusRetired || v1["has_private_key"] != false {
		t.Fatalf("read after grace, before tick: %v", v1)
	}
	resp, err := env.do(logical.UpdateOperation, dkimPath+"/private", map[string]interface{}{"version": 1})
	if code := statusOf(logical.UpdateOperation, resp, err); code != 404 {
		t.Fatalf("private of a version past its grace: status %d, want 404", code)
	}
}

func TestDKIM_ZeroGraceRetiresAtOnce(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_grace_period": 0})
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
	v, m := env.storedDKIMVersion("tenant-1", "example.com", 1)
	if v.Status != dkimStatusRetired || m.PrivateKey != "" {
		t.Fatalf("with no grace period: stored status %q, private key present %v", v.Status, m.PrivateKey != "")
	}
}

func TestDKIM_WriteNewKeyTypeOrSelectorRotates(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector": "mail1", "key_type": "ed25519"})
	if got := env.ok(logical.ReadOperation, dkimPath, nil); got["selector"] != "mail1" || got["record_name"] != "mail1._domainkey.example.com" {
		t.Fatalf("given selector: %v", got["selector"])
	}
	// Same key_type and selector: nothing new.
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector": "mail1", "key_type": "ed25519"})
	if v := env.ok(logical.ReadOperation, dkimPath, nil)["version"]; v != 1 {
		t.Fatalf("rewriting the same key settings made version %v", v)
	}

	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "rsa-3072", "selector_prefix": "s"})
	got := env.ok(logical.ReadOperation, dkimPath, nil)
	if got["version"] != 2 || got["key_type"] != "rsa-3072" || got["selector"] != "s202611" {
		t.Fatalf("key_type change: version %v, key_type %v, selector %v", got["version"], got["key_type"], got["selector"])
	}
	v1 := got["versions"].(map[string]interface{})["1"].(map[string]interface{})
	if v1["status"] != dkimStatusRetiring {
		t.Fatalf("the replaced key is %v, want retiring", v1["status"])
	}

	msg := env.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector": "mail1"})
	if !strings.Contains(msg, "selector") || !strings.Contains(msg, "version 1") {
		t.Fatalf("reused selector: %q", msg)
	}
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector": "mail2"})
	if got := env.ok(logical.ReadOperation, dkimPath, nil); got["version"] != 3 || got["key_type"] != "rsa-3072" {
		t.Fatalf("selector change: version %v key_type %v", got["version"], got["key_type"])
	}
	h := env.ok(logical.ReadOperation, dkimPath+"/history", nil)["history"].([]interface{})
	if len(h) != 2 || h[0].(map[string]interface{})["operation"] != "rotate" {
		t.Fatalf("history %v", h)
	}
}

func TestDKIM_RejectsBadInputAndStoresNothing(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	cases := []struct {
		name, path string
		in         map[string]interface{}
		mention    []string
	}{
		{"rsa-1024", dkimPath, map[string]interface{}{"key_type": "rsa-1024"}, []string{"key_type", "2048"}},
		{"rsa1024", dkimPath, map[string]interface{}{"key_type": "rsa1024"}, []string{"key_type", "2048"}},
		{"unknown key_type", dkimPath, map[string]interface{}{"key_type": "dsa"}, []string{"key_type", "rsa-2048, rsa-3072, rsa-4096, ed25519"}},
		{"label of 64", "dkim/t1/" + strings.Repeat("a", 64) + ".com", nil, []string{"domain", "63"}},
		{"name of 254", "dkim/t1/" + strings.Join([]string{long63, long63, long63, strings.Repeat("a", 61)}, "."), nil, []string{"domain", "253"}},
		{"space", "dkim/t1/exa mple.com", nil, []string{"domain", "exa mple"}},
		{"underscore", "dkim/t1/exa_mple.com", nil, []string{"domain"}},
		{"leading hyphen", "dkim/t1/-example.com", nil, []string{"domain"}},
		{"empty label", "dkim/t1/example..com", nil, []string{"domain"}},
		{"single label", "dkim/t1/localhost", nil, []string{"domain", "two labels"}},
		{"bad punycode", "dkim/t1/xn--zz.com", nil, []string{"domain", "punycode"}},
		{"unconvertible Unicode", "dkim/t1/a\u200db.com", nil, []string{"domain", "punycode"}},
		{"selector with dot", dkimPath, map[string]interface{}{"selector": "a.b"}, []string{"selector"}},
		{"selector with underscore", dkimPath, map[string]interface{}{"selector": "a_b"}, []string{"selector"}},
		{"selector of 64", dkimPath, map[string]interface{}{"selector": strings.Repeat("s", 64)}, []string{"selector"}},
		{"selector_prefix too long", dkimPath, map[string]interface{}{"selector_prefix": strings.Repeat("p", 41)}, []string{"selector_prefix"}},
		{"record name too long", "dkim/t1/" + strings.Join([]string{long63, long63, long63, strings.Repeat("a", 50)}, "."), nil, []string{"domain", "record name"}},
		{"bad tenant", "dkim/-t/example.com", nil, []string{"tenant"}},
		{"bad rotation_period", dkimPath, map[string]interface{}{"rotation_period": -1}, []string{"rotation_period"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newImmediateDKIMEnv(t)
			msg := env.badRequest(logical.UpdateOperation, tc.path, tc.in)
			for _, m := range tc.mention {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not mention %q", msg, m)
				}
			}
			if keys := env.storedKeys(); len(keys) != 0 {
				t.Errorf("bad input stored %v", keys)
			}
		})
	}
}

func TestDKIM_BadUpdateLeavesKeyUnchanged(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	before := env.storageSnapshot()
	// A valid key_type with an invalid prefix: nothing may be applied.
	env.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "rsa-2048", "selector_prefix": "-x"})
	if after := env.storageSnapshot(); !reflect.DeepEqual(before, after) {
		t.Fatal("a refused update changed the stored key")
	}
}

func TestDKIM_UnicodeDomainsLiveUnderTheirPunycode(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, "dkim/tenant-1/xn--bcher-kva.example", map[string]interface{}{"key_type": "ed25519"})
	uni := env.ok(logical.ReadOperation, "dkim/tenant-1/xn--bcher-kva.example", nil)
	if uni["domain"] != "xn--bcher-kva.example" || uni["domain_unicode"] != "bücher.example" ||
		uni["record_name"] != "pm202611._domainkey.xn--bcher-kva.example" {
		t.Fatalf("Unicode domain: %v / %v / %v", uni["domain"], uni["domain_unicode"], uni["record_name"])
	}
	signed := env.signVia("dkim/tenant-1/xn--bcher-kva.example", testMessage, nil)
	if !strings.Contains(signed, "d=xn--bcher-kva.example;") {
		t.Fatal("signature does not use the punycode domain")
	}
	if err := dkimcheck.Verify(env.publishedTXT("dkim/tenant-1/xn--bcher-kva.example"), signed); err != nil {
		t.Fatal(err)
	}

	keys := env.ok(logical.ListOperation, "dkim/tenant-1/", nil)["keys"]
	if !reflect.DeepEqual(keys, []string{"example.com", "xn--bcher-kva.example"}) {
		t.Fatalf("list = %v", keys)
	}
	env.badRequest(logical.DeleteOperation, "dkim/tenant-1/Bücher.example", nil)
	env.ok(logical.DeleteOperation, "dkim/tenant-1/xn--bcher-kva.example", nil)
	if keys := env.ok(logical.ListOperation, "dkim/tenant-1/", nil)["keys"]; !reflect.DeepEqual(keys, []string{"example.com"}) {
		t.Fatalf("list after delete = %v", keys)
	}
	if tenants := env.ok(logical.ListOperation, "dkim/", nil)["keys"]; !reflect.DeepEqual(tenants, []string{"tenant-1"}) {
		t.Fatalf("tenants = %v", tenants)
	}
}

func TestDKIM_MalformedSubPathNamesTheDomain(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	msg := env.badRequest(logical.ReadOperation, "dkim/tenant-1/exa_mple.com/bogus", nil)
	if !strings.Contains(msg, "domain") {
		t.Fatalf("message %q", msg)
	}
	resp, err := env.do(logical.ReadOperation, "dkim/tenant-1/example.com/bogus", nil)
	if code := statusOf(logical.ReadOperation, resp, err); code != 404 {
		t.Fatalf("status %d, want 404", code)
	}
}

func TestDKIM_PrivateOfMissingKeyIs404(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	if resp, err := env.do(logical.ReadOperation, dkimPath, nil); err != nil || resp != nil {
		t.Fatalf("read of a missing key: %v, %v (want a bare 404)", resp, err)
	}
	for p, op := range map[string]logical.Operation{dkimPath + "/private": logical.UpdateOperation, dkimPath + "/dns": logical.ReadOperation} {
		resp, err := env.do(op, p, nil)
		if code := statusOf(op, resp, err); code != 404 {
			t.Fatalf("%s %s of a missing key: status %d (want 404)", op, p, code)
		}
	}
	var coded logical.HTTPCodedError
	_, err := env.do(logical.UpdateOperation, dkimPath+"/rotate", nil)
	if !errors.As(err, &coded) || coded.Code() != 404 {
		t.Fatalf("rotate of a missing key: %v", err)
	}
}

func TestHelp_ExplainsEveryDKIMField(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	for path, fields := range map[string][]string{
		dkimPath:           {"key_type", "selector", "selector_prefix", "exportable", "rotation_period", "auto_rotate"},
		dkimPath + "/sign": {"message", "headers", "canonicalization"},
	} {
		resp, err := env.do(logical.HelpOperation, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		help := resp.Data["help"].(string)
		for _, f := range fields {
			if !strings.Contains(help, "\n"+f) && !strings.Contains(help, " "+f+" ") {
				t.Errorf("path-help of %s does not explain %q", path, f)
			}
		}
	}
}

func TestDKIM_SelectorsOfTrimmedVersionsAreNotReused(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_grace_period": 0})
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519", "max_versions": 1})
	seen := map[string]int{}
	for v := 1; v <= 4; v++ {
		if v > 1 {
			env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
		}
		sel := env.ok(logical.ReadOperation, dkimPath, nil)["selector"].(string)
		if prev, ok := seen[sel]; ok {
			t.Fatalf("version %d reuses selector %q of version %d", v, sel, prev)
		}
		seen[sel] = v
	}
	// A selector given by hand is refused too once a dropped version had it.
	msg := env.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector": "pm202611"})
	if !strings.Contains(msg, "selector") {
		t.Fatalf("reused selector of a dropped version: %q", msg)
	}
}

// dkimSubPathRequests are every path under a DKIM secret with the operation
// it serves, so that a rule can be checked on all of them.
func dkimSubPathRequests(secret string) map[string]logical.Operation {
	return map[string]logical.Operation{
		secret:               logical.ReadOperation,
		secret + "/dns":      logical.ReadOperation,
		secret + "/sign":     logical.UpdateOperation,
		secret + "/private":  logical.UpdateOperation,
		secret + "/rotate":   logical.UpdateOperation,
		secret + "/history":  logical.ReadOperation,
		secret + "/revoke":   logical.UpdateOperation,
		secret + "/bogus":    logical.ReadOperation,
		secret + "/a/b/c/d":  logical.UpdateOperation,
		secret + "/../bank2": logical.ReadOperation,
	}
}

// Finding 1: a DKIM domain has one accepted spelling; the others are a 400
// naming the canonical path, on every sub-path, never a silent alias.
func TestDKIM_NonCanonicalSpellingsAre400NamingTheCanonicalPath(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "dkim/tenant-1/bank.com", map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, "dkim/tenant-1/xn--bcher-kva.example", map[string]interface{}{"key_type": "ed25519"})
	before := env.storageSnapshot()
	good := base64.StdEncoding.EncodeToString([]byte(testMessage))
	for spelling, canonical := range map[string]string{
		"BANK.COM":                     "dkim/tenant-1/bank.com",
		"Bank.com":                     "dkim/tenant-1/bank.com",
		"bank.com.":                    "dkim/tenant-1/bank.com",
		"\uff42\uff41\uff4e\uff4b.com": "dkim/tenant-1/bank.com", // full-width
		"bank\u3002com":                "dkim/tenant-1/bank.com", // ideographic full stop
		"b\u00fccher.example":          "dkim/tenant-1/xn--bcher-kva.example",
		"B\u00fccher.example":          "dkim/tenant-1/xn--bcher-kva.example",
		"XN--BCHER-KVA.example":        "dkim/tenant-1/xn--bcher-kva.example",
	} {
		for path, op := range dkimSubPathRequests("dkim/tenant-1/" + spelling) {
			if strings.HasSuffix(path, "/../bank2") {
				continue // Vault resolves ".." before the engine sees it
			}
			t.Run(path, func(t *testing.T) {
				// Each path gets only fields it takes: an unknown field is
				// a 400 of its own.
				var in map[string]interface{}
				switch {
				case strings.HasSuffix(path, "/sign"):
					in = map[string]interface{}{"message": good}
				case strings.HasSuffix(path, "/rotate"), strings.HasSuffix(path, "/revoke"):
					in = map[string]interface{}{"reason": "test"}
				}
				resp, err := env.do(op, path, in)
				if code := statusOf(op, resp, err); code != 400 {
					t.Fatalf("status %d (%v, %v), want 400", code, resp, err)
				}
				if msg := resp.Error().Error(); !strings.Contains(msg, "use "+canonical) {
					t.Fatalf("message %q does not name the canonical path %s", msg, canonical)
				}
			})
		}
	}
	// A create under a non-canonical spelling stores nothing either.
	env.badRequest(logical.UpdateOperation, "dkim/tenant-1/EXAMPLE.org", nil)
	if after := env.storageSnapshot(); !reflect.DeepEqual(before, after) {
		t.Fatal("a non-canonical spelling changed storage")
	}
}

func TestDKIM_NonCanonicalSelectorIs400NamingTheCanonicalValue(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	msg := env.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519", "selector": "MAIL1"})
	if !strings.Contains(msg, "selector") || !strings.Contains(msg, `"mail1"`) {
		t.Fatalf("selector MAIL1: %q", msg)
	}
	if msg := env.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector": " mail1"}); !strings.Contains(msg, `"mail1"`) {
		t.Fatalf("selector with a space: %q", msg)
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Fatalf("stored %v", keys)
	}
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519", "selector": "mail1"})
}

// Finding 2: a revoked DKIM key loses its private key at once; dns lists
// it under revoke with an empty p=, sign and private answer 409 until a
// rotation makes a new key.
func TestDKIM_RevokeDestroysKeysAndListsSelectorsUnderRevoke(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "yearly"})
	got := env.ok(logical.UpdateOperation, dkimPath+"/revoke", map[string]interface{}{"reason": "key leaked", "incident_id": "INC-9"})
	if !reflect.DeepEqual(got["revoked_versions"], []int{1, 2}) {
		t.Fatalf("revoke answered %v", got)
	}
	for v := 1; v <= 2; v++ {
		if sv, m := env.storedDKIMVersion("tenant-1", "example.com", v); sv.Status != statusRevoked || m.PrivateKey != "" || m.PublicKey == "" {
			t.Fatalf("stored version %d: status %q, private key present %v", v, sv.Status, m.PrivateKey != "")
		}
	}
	dns := env.ok(logical.ReadOperation, dkimPath+"/dns", nil)
	if publish := dns["publish"].([]interface{}); len(publish) != 0 {
		t.Fatalf("publish after revoke: %v", publish)
	}
	revoke, _ := dns["revoke"].([]interface{})
	if len(revoke) != 2 {
		t.Fatalf("revoke list %v", dns["revoke"])
	}
	for i, sel := range []string{"pm202611-2", "pm202611"} {
		rec := revoke[i].(map[string]interface{})
		if rec["name"] != sel+"._domainkey.example.com" || rec["value"] != "v=DKIM1; p=" || rec["status"] != statusRevoked ||
			!reflect.DeepEqual(rec["txt_strings"], []string{"v=DKIM1; p="}) {
			t.Fatalf("revoke[%d] = %v", i, rec)
		}
	}
	good := base64.StdEncoding.EncodeToString([]byte(testMessage))
	if msg := env.refused(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"message": good}, 409); !strings.Contains(msg, "revoked") || !strings.Contains(msg, dkimPath+"/rotate") {
		t.Fatalf("sign after revoke: %q", msg)
	}
	if msg := env.refused(logical.UpdateOperation, dkimPath+"/private", nil, 409); !strings.Contains(msg, "revoked") || !strings.Contains(msg, dkimPath+"/rotate") {
		t.Fatalf("private after revoke: %q", msg)
	}
	if msg := env.refused(logical.UpdateOperation, dkimPath+"/private", map[string]interface{}{"version": 1}, 409); !strings.Contains(msg, "revoked") {
		t.Fatalf("private of a revoked version: %q", msg)
	}

	// A rotation makes a usable key; the revoked ones stay under revoke.
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "after incident"})
	records := env.publishedTXT(dkimPath)
	if err := dkimcheck.Verify(records, env.signVia(dkimPath, testMessage, nil)); err != nil || len(records) != 1 {
		t.Fatalf("after the rotation: %d records, %v", len(records), err)
	}
	if n := len(env.ok(logical.ReadOperation, dkimPath+"/dns", nil)["revoke"].([]interface{})); n != 2 {
		t.Fatalf("revoke list after the rotation has %d records", n)
	}
	if logs := env.logs.String(); strings.Contains(logs, "PRIVATE KEY") {
		t.Fatal("a private key appears in the plugin log")
	}
}

// A version retired by the end of its grace stays under remove; only
// revoked ones are under revoke.
func TestDKIM_RetiredStaysUnderRemoveRevokedGoesUnderRevoke(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_grace_period": 0, "dkim_revocation_period": 0})
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
	env.ok(logical.UpdateOperation, dkimPath+"/revoke", map[string]interface{}{"reason": "leak"})
	dns := env.ok(logical.ReadOperation, dkimPath+"/dns", nil)
	remove, _ := dns["remove"].([]interface{})
	revoke, _ := dns["revoke"].([]interface{})
	if len(remove) != 1 || remove[0].(map[string]interface{})["version"] != 1 || remove[0].(map[string]interface{})["status"] != dkimStatusRetired {
		t.Fatalf("remove = %v", remove)
	}
	if len(revoke) != 1 || revoke[0].(map[string]interface{})["version"] != 2 {
		t.Fatalf("revoke = %v", revoke)
	}
}

// Finding 7: header names are RFC 7230 tokens, so no DKIM tag can be
// injected through h=; their count and length are bounded.
func TestDKIM_SignRefusesTagInjectionInHeaders(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	good := base64.StdEncoding.EncodeToString([]byte(testMessage))
	for name, headers := range map[string]interface{}{
		"semicolon and equals": "From,Subject;d=evil.example;s=x",
		"equals":               "From,x=y",
		"semicolon":            "From,Subject;",
		"quote":                "From,Sub\"ject",
		"parenthesis":          "From,(x)",
		"too many":             "From," + strings.Repeat("X-A,", 64) + "X-B",
		"too long":             "From," + strings.Repeat("x", 129),
	} {
		t.Run(name, func(t *testing.T) {
			msg := env.badRequest(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"message": good, "headers": headers})
			if !strings.Contains(msg, "headers") {
				t.Fatalf("message %q does not name headers", msg)
			}
			if name == "semicolon and equals" && !strings.Contains(msg, "RFC 7230") {
				t.Fatalf("message %q does not give the rule", msg)
			}
		})
	}
	// Every token character is still accepted.
	signed := env.signVia(dkimPath, testMessage, map[string]interface{}{"headers": "From,X-a!#$%&'*+-.^_`|~9"})
	if err := dkimcheck.Verify(env.publishedTXT(dkimPath), signed); err != nil {
		t.Fatal(err)
	}
}

// Finding 6: sign refuses a message over dkim_sign_max_message_bytes with a
// 413 naming the field and the limit.
func TestDKIM_SignRefusesOversizeMessageWith413(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	if got := env.ok(logical.ReadOperation, "config", nil)["dkim_sign_max_message_bytes"]; got != 4<<20 {
		t.Fatalf("default dkim_sign_max_message_bytes = %v, want %d", got, 4<<20)
	}
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_sign_max_message_bytes": 2048})
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	body := strings.Repeat("x", 2048-len(testMessage))
	exact := testMessage + body
	env.signVia(dkimPath, exact, nil) // at the limit
	over := base64.StdEncoding.EncodeToString([]byte(exact + "y"))
	msg := env.refused(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"message": over}, 413)
	if !strings.Contains(msg, "dkim_sign_max_message_bytes") || !strings.Contains(msg, "2048") {
		t.Fatalf("oversize sign: %q", msg)
	}
	// Line breaks in the base64 do not count against the limit.
	wrapped := base64.StdEncoding.EncodeToString([]byte(exact))
	var folded strings.Builder
	for i := 0; i < len(wrapped); i += 76 {
		folded.WriteString(wrapped[i:min(i+76, len(wrapped))] + "\r\n")
	}
	env.ok(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"message": folded.String()})

	for _, bad := range []int{0, 1023, 64<<20 + 1, -1} {
		if msg := env.badRequest(logical.UpdateOperation, "config", map[string]interface{}{"dkim_sign_max_message_bytes": bad}); !strings.Contains(msg, "dkim_sign_max_message_bytes") {
			t.Fatalf("config %d: %q", bad, msg)
		}
	}
}

// Finding 10 (D3): exporting is an update on private; a read is no
// operation there.
func TestDKIM_PrivateIsUpdateOnly(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	if _, err := env.do(logical.ReadOperation, dkimPath+"/private", nil); !errors.Is(err, logical.ErrUnsupportedOperation) {
		t.Fatalf("read of private: %v, want unsupported operation (405)", err)
	}
	if pemText := env.ok(logical.UpdateOperation, dkimPath+"/private", nil)["private_key"].(string); !strings.Contains(pemText, "PRIVATE KEY") {
		t.Fatal("update of private gave no key")
	}
}

// monthEndClock answers 2026-11-30 23:59:59 on its first reading and
// 2026-12-01 on every later one, so a second reading during one request
// shows as a December selector on a November version.
type monthEndClock struct {
	mu    sync.Mutex
	reads int
}

func (c *monthEndClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	if c.reads == 1 {
		return time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC)
	}
	return time.Date(2026, 12, 1, 0, 0, 1, 0, time.UTC)
}

func TestDKIM_SelectorMonthIsTheRotationsOwnTime(t *testing.T) {
	for _, op := range []string{"create", "rotate"} {
		t.Run(op, func(t *testing.T) {
			env := newImmediateDKIMEnv(t)
			if op == "rotate" {
				env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519", "selector": "first"})
			}
			env.b.clock = (&monthEndClock{}).Now
			if op == "rotate" {
				env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
			} else {
				env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
			}
			env.b.clock = env.clock.Now
			got := env.ok(logical.ReadOperation, dkimPath, nil)
			if got["selector"] != "pm202611" || got["last_rotated"] != "2026-11-30T23:59:59Z" {
				t.Fatalf("selector %v for a version made at %v", got["selector"], got["last_rotated"])
			}
		})
	}
}

func TestDKIM_GenerateDoesNotChangeTheEntry(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	e, err := loadSecret(context.Background(), env.storage, "dkim", "tenant-1", "example.com")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := json.Marshal(e)
	cfg, _ := env.b.config(context.Background(), env.storage)
	if _, err := env.b.kinds["dkim"].create(context.Background(), env.b, e, cfg, env.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if after, _ := json.Marshal(e); !bytes.Equal(before, after) {
		t.Fatalf("generate changed the entry:\n%s\n%s", before, after)
	}
}

// storedDKIMSettings decodes a secret's settings straight from storage.
func (env *testEnv) storedDKIMSettings(tenant, domain string) map[string]interface{} {
	env.t.Helper()
	raw, err := env.storage.Get(context.Background(), secretStorageKey("dkim", tenant, domain))
	if err != nil || raw == nil {
		env.t.Fatalf("reading storage: %v", err)
	}
	var e struct {
		Settings map[string]interface{} `json:"settings"`
	}
	if err := json.Unmarshal(raw.Value, &e); err != nil {
		env.t.Fatal(err)
	}
	return e.Settings
}

// rememberedSelectors counts the selectors a secret's settings keep.
func rememberedSelectors(settings map[string]interface{}) int {
	n := 0
	for _, f := range []string{"used_selectors", "selectors"} {
		if l, ok := settings[f].([]interface{}); ok {
			n += len(l)
		}
	}
	return n
}

// Finding 5: the remembered selectors are bounded, and a bounded list still
// never lets a generated selector come back.
func TestDKIM_RememberedSelectorsAreBounded(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_grace_period": 0})
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519", "max_versions": 1})
	const rotations = 1010
	seen := map[string]bool{"pm202611": true}
	for i := 0; i < rotations; i++ {
		env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
		sel := env.ok(logical.ReadOperation, dkimPath, nil)["selector"].(string)
		if seen[sel] {
			t.Fatalf("rotation %d reused selector %s", i+1, sel)
		}
		seen[sel] = true
	}
	if n := rememberedSelectors(env.storedDKIMSettings("tenant-1", "example.com")); n > 1000 {
		t.Fatalf("%d selectors remembered after %d rotations, bound is 1000", n, rotations)
	}
}

// BenchmarkDKIMSignLarge8MiB measures what one sign of an 8 MiB message
// allocates (run with -benchmem): the base64 is streamed into the signer,
// so B/op stays near the size of the request itself.
func BenchmarkDKIMSignLarge8MiB(b *testing.B) {
	env := newTestEnv(&testing.T{})
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_sign_max_message_bytes": 16 << 20})
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	msg := testMessage + strings.Repeat(line, (8<<20)/len(line))
	in := map[string]interface{}{"message": base64.StdEncoding.EncodeToString([]byte(msg))}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := env.do(logical.UpdateOperation, dkimPath+"/sign", in)
		if err != nil || resp.IsError() {
			b.Fatalf("sign: %v %v", resp, err)
		}
	}
}

// A selector may be given again only dkimSelectorQuarantine after its key
// left DNS; entries written before the bounded list keep theirs refused.
func TestDKIM_SelectorReuseWaitsForTheQuarantine(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_grace_period": 0})
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519", "selector": "mail1", "max_versions": 1})
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil) // mail1 retired now, and trimmed
	env.clock.Advance(dkimSelectorQuarantine - time.Minute)
	if msg := env.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector": "mail1"}); !strings.Contains(msg, "30 days") {
		t.Fatalf("reuse inside the quarantine: %q", msg)
	}
	env.clock.Advance(time.Minute)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector": "mail1"})

	// A legacy list is honoured, then folded into the bounded one.
	e, err := loadSecret(context.Background(), env.storage, "dkim", "tenant-1", "example.com")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := dkimSettingsOf(e)
	s.Selectors, s.LegacyUsed = nil, []string{"old1"}
	e.Settings, _ = json.Marshal(s)
	if err := saveSecret(context.Background(), env.storage, e); err != nil {
		t.Fatal(err)
	}
	// Written behind the engine's back, as an older version left it: drop
	// the cached entry as an invalidation would.
	env.b.invalidate(context.Background(), e.storageKey())
	env.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector": "old1"})
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
	settings := env.storedDKIMSettings("tenant-1", "example.com")
	if _, legacy := settings["used_selectors"]; legacy || !strings.Contains(fmt.Sprint(settings["selectors"]), "old1") {
		t.Fatalf("settings after a rotation: %v", settings)
	}
}

// An incident rotation of a DKIM key (revoke_previous, from the shared
// rotate path and from rotate-tenant) leaves only the new key published and
// signing: every earlier selector is under revoke with an empty p= and its
// private key is gone from storage, not retiring for the grace period.
func TestDKIM_IncidentRotationRevokesEveryEarlierSelector(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "yearly"}) // v1 retiring
	got := env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{
		"revoke_previous": true, "incident_id": "INC-42", "reason": "key leaked"})
	if !reflect.DeepEqual(got["revoked_versions"], []int{1, 2}) {
		t.Fatalf("rotate answered %v", got)
	}
	id := env.startJob("rotate-tenant/tenant-1", map[string]interface{}{
		"types": "dkim", "revoke_previous": true, "incident_id": "INC-43", "reason": "tenant breach"})
	env.wantJobCounts(env.runJob(id), 1, 1, 0)
	hist := env.ok(logical.ReadOperation, dkimPath+"/history", nil)["history"].([]interface{})
	revoke, rotate := hist[0].(map[string]interface{}), hist[1].(map[string]interface{})
	if revoke["operation"] != "revoke" || revoke["incident_id"] != "INC-43" || revoke["from_version"] != 3 || revoke["to_version"] != 3 {
		t.Fatalf("revocation row of the tenant job %v", revoke)
	}
	if rotate["operation"] != "rotate" || rotate["trigger"] != triggerEvent || rotate["incident_id"] != "INC-43" ||
		rotate["revoke_previous"] != true || rotate["from_version"] != 3 || rotate["to_version"] != 4 || rotate["job_id"] != id {
		t.Fatalf("rotation row of the tenant job %v", rotate)
	}
	for v := 1; v <= 3; v++ {
		if sv, m := env.storedDKIMVersion("tenant-1", "example.com", v); sv.Status != statusRevoked || m.PrivateKey != "" {
			t.Fatalf("stored version %d: status %q, private key present %v", v, sv.Status, m.PrivateKey != "")
		}
	}
	dns := env.ok(logical.ReadOperation, dkimPath+"/dns", nil)
	if publish := dns["publish"].([]interface{}); len(publish) != 1 || publish[0].(map[string]interface{})["version"] != 4 {
		t.Fatalf("publish after the incident rotations: %v", publish)
	}
	if revoke := dns["revoke"].([]interface{}); len(revoke) != 3 {
		t.Fatalf("revoke list after the incident rotations: %v", revoke)
	}
	records := env.publishedTXT(dkimPath)
	if err := dkimcheck.Verify(records, env.signVia(dkimPath, testMessage, nil)); err != nil || len(records) != 1 {
		t.Fatalf("the new key: %d records published, verify: %v", len(records), err)
	}
}
