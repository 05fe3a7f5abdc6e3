package migrate

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func rsaPEM(t *testing.T, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

func sshPEM(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return string(pem.EncodeToMemory(block)), sp
}

// fixture is one source of each type, with values that are unique strings
// so the output can be searched for them.
type fixture struct {
	f       *fakeVault
	secrets []string // every secret value written to KV
	dkimKey string
}

func newFixture(t *testing.T) *fixture {
	x := &fixture{f: newFake(), dkimKey: rsaPEM(t, 2048)}
	sshKey, _ := sshPEM(t)
	x.f.put("smtp/tenant-1/mail-1", map[string]interface{}{"username": "admin@example.com", "password": "pw-4c1d-unique",
		"host": "smtp.example.com", "port": "465", "encryption": "ssl", "created_at": "2025-01-01T00:00:00Z"})
	x.f.put("api-key/tenant-1/postmark", map[string]interface{}{"serverToken": "pm-tok-9e2b-unique", "messageStream": "outbound"})
	x.f.put("api-keys/tenant-1/sendgrid", map[string]interface{}{"apiKey": "SG.sg-7a3f-unique", "api_key_id": "kid1", "scopes": []interface{}{"mail.send", "api_keys.read"}})
	x.f.put("dkim/tenant-1/Example.COM", map[string]interface{}{"private_key": x.dkimKey, "selector": "pm"})
	x.f.put("ssh/tenant-1/admin", map[string]interface{}{"private_key": sshKey})
	x.secrets = []string{"pw-4c1d-unique", "pm-tok-9e2b-unique", "SG.sg-7a3f-unique", x.dkimKey, sshKey}
	for _, line := range strings.Split(x.dkimKey, "\n")[1:4] {
		x.secrets = append(x.secrets, line) // any line of a key is a secret too
	}
	return x
}

func (x *fixture) run(t *testing.T, apply, all bool) (Summary, string) {
	t.Helper()
	var out bytes.Buffer
	sum, err := Run(context.Background(), x.f, Options{SourceMount: "secret", SourcePrefix: "penguinmails", EngineMount: "penguinmails",
		Apply: apply, AllVersions: all, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	return sum, out.String()
}

func wantRow(t *testing.T, out, action, source, dest, detail string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, action+" ") && strings.Contains(line, " "+source) &&
			(dest == "" || strings.Contains(line, " -> "+dest)) && strings.Contains(line, detail) {
			return
		}
	}
	t.Errorf("no %q row for %s -> %s with %q in:\n%s", action, source, dest, detail, out)
}

func TestDryRunPlansAndWritesNothing(t *testing.T) {
	x := newFixture(t)
	x.f.put("vps/tenant-1/admin_ssh", map[string]interface{}{"private_key": "x"})
	sum, out := x.run(t, false, false)
	if len(x.f.writes) != 0 || len(x.f.engine) != 0 {
		t.Fatalf("dry run wrote %v", x.f.writes)
	}
	if sum != (Summary{Created: 5, Skipped: 1}) {
		t.Fatalf("summary %+v\n%s", sum, out)
	}
	wantRow(t, out, "create", "secret/penguinmails/smtp/tenant-1/mail-1", "penguinmails/smtp/tenant-1/mail-1", "fields not copied: created_at")
	wantRow(t, out, "create", "secret/penguinmails/api-key/tenant-1/postmark", "penguinmails/api-keys/tenant-1/postmark", "")
	wantRow(t, out, "create", "secret/penguinmails/dkim/tenant-1/Example.COM", "penguinmails/dkim/tenant-1/example.com", "")
	wantRow(t, out, "skip", "secret/penguinmails/vps/", "", "not a secret type")
	if !strings.Contains(out, "dry run, nothing written") {
		t.Errorf("summary does not say dry run:\n%s", out)
	}
}

func TestApplyWritesVerifiesAndSecondRunChangesNothing(t *testing.T) {
	x := newFixture(t)
	sum, out := x.run(t, true, false)
	if sum != (Summary{Created: 5}) {
		t.Fatalf("summary %+v\n%s", sum, out)
	}
	smtp := x.f.engine["penguinmails/smtp/tenant-1/mail-1"].fields
	if smtp["password"] != "pw-4c1d-unique" || smtp["encryption"] != "tls" || smtp["port"] != 465 && fmt.Sprint(smtp["port"]) != "465" {
		t.Fatalf("smtp written as %v", smtp)
	}
	pm := x.f.engine["penguinmails/api-keys/tenant-1/postmark"].fields
	if pm["server_token"] != "pm-tok-9e2b-unique" || pm["message_stream"] != "outbound" {
		t.Fatalf("postmark written as %v", pm)
	}
	dkim := x.f.engine["penguinmails/dkim/tenant-1/example.com"]
	if dkim == nil || dkim.pending != nil || dkim.fields["selector"] != "pm" {
		t.Fatalf("dkim not imported and activated: %+v", dkim)
	}
	if !strings.Contains(out, "verified") {
		t.Fatalf("rows do not say verified:\n%s", out)
	}
	writes := len(x.f.writes)
	sum, out = x.run(t, true, false)
	if sum != (Summary{Unchanged: 5}) || len(x.f.writes) != writes {
		t.Fatalf("second run: %+v, %d new writes\n%s", sum, len(x.f.writes)-writes, out)
	}
}

func TestChangedSourceIsANewVersionOrASettingsUpdate(t *testing.T) {
	x := newFixture(t)
	x.run(t, true, false)
	x.f.put("smtp/tenant-1/mail-1", map[string]interface{}{"username": "admin@example.com", "password": "pw-2-unique",
		"host": "smtp.example.com", "port": 465, "encryption": "ssl"})
	x.f.put("api-key/tenant-1/postmark", map[string]interface{}{"serverToken": "pm-tok-9e2b-unique", "messageStream": "broadcast"})
	sum, out := x.run(t, false, false)
	if sum.Updated != 2 {
		t.Fatalf("summary %+v\n%s", sum, out)
	}
	wantRow(t, out, "update", "secret/penguinmails/smtp/tenant-1/mail-1", "", "(new version; differs: password)")
	wantRow(t, out, "update", "secret/penguinmails/api-key/tenant-1/postmark", "", "(settings in place; differs: message_stream)")
	x.run(t, true, false)
	if got := x.f.engine["penguinmails/smtp/tenant-1/mail-1"]; got.fields["password"] != "pw-2-unique" || got.version != 2 {
		t.Fatalf("update not applied: version %d", got.version)
	}
}

func TestAllVersionsCopiesKeptVersionsOldestFirst(t *testing.T) {
	x := &fixture{f: newFake()}
	for i, pw := range []string{"v1-pw", "v2-pw", "v3-pw"} {
		x.f.put("smtp/t1/m1", map[string]interface{}{"username": "u", "password": pw, "host": "h.example.com"})
		_ = i
	}
	x.f.kv["smtp/t1/m1"][1] = kvEntry{data: x.f.kv["smtp/t1/m1"][1].data, deleted: true}
	var order []string
	x.f.failWrite = func(_ string, data map[string]interface{}) error {
		order = append(order, data["password"].(string))
		return nil
	}
	sum, out := x.run(t, true, true)
	if sum != (Summary{Created: 1}) || strings.Join(order, ",") != "v1-pw,v3-pw" {
		t.Fatalf("summary %+v, written in order %v\n%s", sum, order, out)
	}
	wantRow(t, out, "create", "secret/penguinmails/smtp/t1/m1", "", "version 2 deleted, not copied")
	if v := x.f.engine["penguinmails/smtp/t1/m1"].version; v != 2 {
		t.Fatalf("engine has %d versions, want 2", v)
	}
	if sum, _ := x.run(t, true, true); sum != (Summary{Unchanged: 1}) {
		t.Fatalf("second -all-versions run: %+v", sum)
	}
}

func TestAMissingEngineMountStopsBeforePlanning(t *testing.T) {
	x := newFixture(t)
	x.f.noEngine = true
	var out bytes.Buffer
	_, err := Run(context.Background(), x.f, Options{SourceMount: "secret", SourcePrefix: "penguinmails", EngineMount: "penguinmails", Out: &out})
	if err == nil || !strings.Contains(err.Error(), "no penguinmails engine at penguinmails/") || out.Len() != 0 {
		t.Fatalf("err %v, output %q", err, out.String())
	}
}

func TestADeletedCurrentVersionIsSkippedInBothModes(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("smtp/t1/m1", map[string]interface{}{"username": "u", "password": "p1", "host": "h.example.com"})
	x.f.put("smtp/t1/m1", map[string]interface{}{"username": "u", "password": "p2", "host": "h.example.com"})
	x.f.kv["smtp/t1/m1"][1] = kvEntry{destroyed: true}
	for _, all := range []bool{false, true} {
		sum, out := x.run(t, true, all)
		if sum != (Summary{Skipped: 1}) || len(x.f.writes) != 0 {
			t.Fatalf("all-versions %v: %+v, writes %v\n%s", all, sum, x.f.writes, out)
		}
		wantRow(t, out, "skip", "secret/penguinmails/smtp/t1/m1", "", "current version 2 is destroyed in KV")
	}
}

func TestAPIKeysCopyOnlyTheCurrentVersion(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("api-keys/t1/postmark", map[string]interface{}{"server_token": "old"})
	x.f.put("api-keys/t1/postmark", map[string]interface{}{"server_token": "new"})
	_, out := x.run(t, true, true)
	if len(x.f.writes) != 1 || x.f.engine["penguinmails/api-keys/t1/postmark"].fields["server_token"] != "new" {
		t.Fatalf("writes %v\n%s", x.f.writes, out)
	}
	wantRow(t, out, "create", "secret/penguinmails/api-keys/t1/postmark", "", "only the current version is copied")
}

func TestBadEntriesAreReportedAndSkippedWhole(t *testing.T) {
	x := &fixture{f: newFake()}
	good := rsaPEM(t, 2048)
	x.f.put("smtp/t1/nopass", map[string]interface{}{"username": "u", "host": "h.example.com"})
	x.f.put("smtp/t1/listpass", map[string]interface{}{"username": "u", "password": []interface{}{"a"}, "host": "h.example.com"})
	x.f.put("dkim/t1/bad.example", map[string]interface{}{"private_key": "-----BEGIN RSA PRIVATE KEY-----\nZm9v\n-----END RSA PRIVATE KEY-----\n", "selector": "pm"})
	x.f.put("dkim/t1/nosel.example", map[string]interface{}{"private_key": good})
	x.f.put("api-keys/t1/sendgrid", map[string]interface{}{"api_key": "SG.x", "scopes": "mail.send"})
	x.f.put("api-keys/t1/hostwind", map[string]interface{}{"api_key": "hw"})
	x.f.put("ssh/t1/small", map[string]interface{}{"private_key": rsaPEM(t, 2048)})
	// Version 1 is good, version 2 is not: with -all-versions nothing is written.
	x.f.put("smtp/t1/half", map[string]interface{}{"username": "u", "password": "p1", "host": "h.example.com"})
	x.f.put("smtp/t1/half", map[string]interface{}{"username": "u", "password": "p2", "host": "h.example.com", "port": "99999"})
	sum, out := x.run(t, true, true)
	if sum != (Summary{Failed: 7, Skipped: 1}) || len(x.f.writes) != 0 {
		t.Fatalf("summary %+v, writes %v\n%s", sum, x.f.writes, out)
	}
	wantRow(t, out, "fail", "secret/penguinmails/smtp/t1/nopass", "", "missing field password")
	wantRow(t, out, "fail", "secret/penguinmails/smtp/t1/listpass", "", "field password has the wrong type: a list")
	wantRow(t, out, "fail", "secret/penguinmails/dkim/t1/bad.example", "", "private_key")
	wantRow(t, out, "fail", "secret/penguinmails/dkim/t1/nosel.example", "", "missing field selector")
	wantRow(t, out, "fail", "secret/penguinmails/api-keys/t1/sendgrid", "", "missing field api_key_id")
	wantRow(t, out, "skip", "secret/penguinmails/api-keys/t1/hostwind", "", "not one the engine holds")
	wantRow(t, out, "fail", "secret/penguinmails/ssh/t1/small", "", "2048-bit RSA key")
	wantRow(t, out, "fail", "secret/penguinmails/smtp/t1/half", "", "version 2: field port")
}

func TestDKIMVersionsThatReuseASelectorAreRefusedBeforeWriting(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("dkim/t1/example.com", map[string]interface{}{"private_key": rsaPEM(t, 2048), "selector": "pm"})
	x.f.put("dkim/t1/example.com", map[string]interface{}{"private_key": rsaPEM(t, 2048), "selector": "pm"})
	sum, out := x.run(t, true, true)
	if sum.Failed != 1 || len(x.f.writes) != 0 {
		t.Fatalf("summary %+v writes %v", sum, x.f.writes)
	}
	wantRow(t, out, "fail", "secret/penguinmails/dkim/t1/example.com", "", "versions 1 and 2 use selector pm")
	// Without -all-versions the current key is copied.
	if sum, out := x.run(t, true, false); sum.Created != 1 {
		t.Fatalf("current only: %+v\n%s", sum, out)
	}
}

func TestAFailureAfterTheFirstVersionRemovesTheSecret(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("smtp/t1/m1", map[string]interface{}{"username": "u", "password": "p1", "host": "h.example.com"})
	x.f.put("smtp/t1/m1", map[string]interface{}{"username": "u", "password": "p2", "host": "h.example.com"})
	x.f.failWrite = func(_ string, data map[string]interface{}) error {
		if data["password"] == "p2" {
			return errors.New("413: the entry would exceed its bound")
		}
		return nil
	}
	sum, out := x.run(t, true, true)
	if sum.Failed != 1 || x.f.engine["penguinmails/smtp/t1/m1"] != nil || len(x.f.deletes) != 1 {
		t.Fatalf("summary %+v, engine %v, deletes %v\n%s", sum, x.f.engine, x.f.deletes, out)
	}
	wantRow(t, out, "fail", "secret/penguinmails/smtp/t1/m1", "", "copying version 2 of 2: writing: 413")
	wantRow(t, out, "fail", "secret/penguinmails/smtp/t1/m1", "", "removed again")
}

func TestReadBackThatDiffersFails(t *testing.T) {
	x := newFixture(t)
	x.f.tamper = func(path string, out map[string]interface{}) {
		if strings.Contains(path, "smtp/") {
			out["password"] = "something-else"
		}
	}
	sum, out := x.run(t, true, false)
	if sum.Failed != 1 || sum.Created != 4 {
		t.Fatalf("summary %+v\n%s", sum, out)
	}
	wantRow(t, out, "fail", "secret/penguinmails/smtp/tenant-1/mail-1", "", "verification failed: the engine's read differs from the source in password")
}

func TestSameDestinationTwiceFailsTheSecond(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("api-key/t1/postmark", map[string]interface{}{"server_token": "a"})
	x.f.put("api-keys/t1/Postmark", map[string]interface{}{"server_token": "b"})
	sum, out := x.run(t, true, false)
	if sum.Created != 1 || sum.Failed != 1 {
		t.Fatalf("summary %+v\n%s", sum, out)
	}
	wantRow(t, out, "fail", "secret/penguinmails/api-keys/t1/Postmark", "penguinmails/api-keys/t1/postmark", "same destination")
}

// No run, dry or applied, good or bad, prints a secret value.
func TestOutputNeverHoldsSecretValues(t *testing.T) {
	x := newFixture(t)
	bad := map[string]interface{}{"username": "u", "password": "bad-pw-51e0-unique", "host": "h.example.com", "port": "not-a-port"}
	x.f.put("smtp/tenant-1/bad", bad)
	x.f.put("dkim/tenant-1/bad.example", map[string]interface{}{"private_key": "dkim-garbage-88aa-unique", "selector": "pm"})
	x.f.put("smtp/tenant-1/conflict", map[string]interface{}{"username": "u", "password": "pw-c1-unique", "pass": "pw-c2-unique", "host": "h"})
	x.secrets = append(x.secrets, "bad-pw-51e0-unique", "not-a-port", "dkim-garbage-88aa-unique", "pw-c1-unique", "pw-c2-unique")
	x.f.tamper = func(path string, out map[string]interface{}) {
		if strings.Contains(path, "api-keys/") {
			out["server_token"] = "tampered-read-unique"
		}
	}
	x.secrets = append(x.secrets, "tampered-read-unique")
	var all strings.Builder
	for _, apply := range []bool{false, true, true} {
		_, out := x.run(t, apply, true)
		all.WriteString(out)
	}
	if !strings.Contains(all.String(), "fail") {
		t.Fatal("the run has no failures to check")
	}
	for _, s := range x.secrets {
		if strings.Contains(all.String(), strings.TrimSpace(s)) {
			t.Errorf("output holds a secret value (%d bytes)", len(s))
		}
	}
}

// A first version that the engine took but that fails its check leaves
// nothing behind either: a later run would otherwise find the secret and
// copy only the newest version.
func TestAFirstVersionFailingItsCheckRemovesTheSecret(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("smtp/t1/m1", map[string]interface{}{"username": "u", "password": "p1", "host": "h.example.com"})
	x.f.put("smtp/t1/m1", map[string]interface{}{"username": "u", "password": "p2", "host": "h.example.com"})
	x.f.tamper = func(path string, out map[string]interface{}) { out["password"] = "something-else" }
	sum, out := x.run(t, true, true)
	if sum.Failed != 1 || x.f.engine["penguinmails/smtp/t1/m1"] != nil || len(x.f.deletes) != 1 {
		t.Fatalf("summary %+v, engine %v, deletes %v\n%s", sum, x.f.engine, x.f.deletes, out)
	}
	wantRow(t, out, "fail", "secret/penguinmails/smtp/t1/m1", "", "copying version 1 of 2: verification failed")
}

// A DKIM key is activated only when it reads back as written; a source
// whose published record is of another key is refused before writing.
func TestDKIMKeyCheckedAgainstItsRecordAndNeverActivatedWhenWrong(t *testing.T) {
	x := &fixture{f: newFake(), dkimKey: rsaPEM(t, 2048)}
	other := rsaPEM(t, 2048)
	otherPair, _, err := dkimkey.Import(other)
	if err != nil {
		t.Fatal(err)
	}
	x.f.put("dkim/t1/a.example", map[string]interface{}{"private_key": x.dkimKey, "selector": "pm",
		"dns_record": "v=DKIM1; k=rsa; p=" + otherPair.PublicB64})
	x.f.put("dkim/t1/b.example", map[string]interface{}{"private_key": x.dkimKey, "selector": "pm"})
	x.f.tamper = func(path string, out map[string]interface{}) {
		if strings.Contains(path, "b.example") {
			out["selector"] = "wrong"
		}
	}
	sum, out := x.run(t, true, false)
	if sum.Failed != 2 {
		t.Fatalf("summary %+v\n%s", sum, out)
	}
	wantRow(t, out, "fail", "secret/penguinmails/dkim/t1/a.example", "", "dns_record does not match the private key")
	for _, w := range x.f.writes {
		if strings.HasSuffix(w, "/activate") {
			t.Fatalf("a key that read back wrong was activated: writes %v", x.f.writes)
		}
		if strings.Contains(w, "a.example") {
			t.Fatalf("a source with a mismatched record was written: %v", x.f.writes)
		}
	}
}

// A secret the engine rotated after the copy is not overwritten with KV's
// older material (which would make the live key a replaced version and, for
// an API key, have it deleted at the provider); a KV version made after the
// engine's is copied as before.
func TestKVMaterialOlderThanTheEnginesIsNotCopiedOverIt(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("api-keys/t1/sendgrid", map[string]interface{}{"api_key": "SG.kv-old", "api_key_id": "kid1", "scopes": "mail.send"})
	x.run(t, true, false)
	dest := "penguinmails/api-keys/t1/sendgrid"
	rotated := x.f.engine[dest]
	rotated.fields["api_key"], rotated.fields["api_key_id"] = "SG.engine-new", "kid2"
	rotated.version++
	rotated.made = x.f.tick()
	writes := len(x.f.writes)
	for _, apply := range []bool{false, true} {
		sum, out := x.run(t, apply, false)
		if sum != (Summary{Skipped: 1}) || len(x.f.writes) != writes {
			t.Fatalf("apply %v: %+v, %d writes\n%s", apply, sum, len(x.f.writes)-writes, out)
		}
		wantRow(t, out, "skip", "secret/penguinmails/api-keys/t1/sendgrid", dest, "KV's material is stale")
	}
	if rotated.fields["api_key"] != "SG.engine-new" {
		t.Fatal("the engine's rotated key was replaced")
	}
	x.f.put("api-keys/t1/sendgrid", map[string]interface{}{"api_key": "SG.kv-newer", "api_key_id": "kid3", "scopes": "mail.send"})
	if sum, out := x.run(t, true, false); sum != (Summary{Updated: 1}) || x.f.engine[dest].fields["api_key"] != "SG.kv-newer" {
		t.Fatalf("a newer KV version: %+v\n%s", sum, out)
	}
}

// The engine trims username and host and keeps a webmail_url the write
// does not give: a source with spaces, or without webmail_url beside an
// engine that has one, is copied and then unchanged, not a verification
// failure on every run.
func TestSMTPSettingsCompareAsTheEngineStoresThem(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("smtp/t1/m1", map[string]interface{}{"username": " u@example.com ", "password": "p1", "host": "h.example.com\n"})
	if sum, out := x.run(t, true, false); sum != (Summary{Created: 1}) {
		t.Fatalf("create: %+v\n%s", sum, out)
	}
	x.f.engine["penguinmails/smtp/t1/m1"].fields["webmail_url"] = "https://webmail.example.com"
	if sum, out := x.run(t, true, false); sum != (Summary{Unchanged: 1}) {
		t.Fatalf("engine's own webmail_url: %+v\n%s", sum, out)
	}
}

// The engine trims every API key field, the key included: a key pasted with
// its newline is copied and verified, then unchanged.
func TestAPIKeyFieldsCompareTrimmed(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("api-keys/t1/postmark", map[string]interface{}{"server_token": "pm-token-with-newline\n", "message_stream": " outbound "})
	if sum, out := x.run(t, true, false); sum != (Summary{Created: 1}) {
		t.Fatalf("create: %+v\n%s", sum, out)
	}
	if sum, out := x.run(t, true, false); sum != (Summary{Unchanged: 1}) {
		t.Fatalf("second run: %+v\n%s", sum, out)
	}
}

// The published key is read from a record (p= folded as DNS tools print
// it, the tags in any order) or given bare, an Ed25519 key with its "="
// padding too; a record of another key does not match.
func TestPublishedKeyForms(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, pemText := range []string{rsaPEM(t, 2048), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))} {
		pair, _, err := dkimkey.Import(pemText)
		if err != nil {
			t.Fatal(err)
		}
		p := pair.PublicB64
		for _, v := range []string{p, "v=DKIM1; k=rsa; p=" + p, "v=DKIM1;k=rsa;p=" + p[:20] + " \n\t" + p[20:] + ";", "p=" + p + "; k=rsa"} {
			if got := publishedKey(v); got != p {
				t.Errorf("publishedKey(%q) = %q, want %q", v, got, p)
			}
		}
		if got := publishedKey("v=DKIM1; p=AAAA" + p[4:]); got == p {
			t.Error("another key read as this one")
		}
	}
}

// A DKIM key the run imported but could not activate waits in the engine,
// newer than KV's version: it is the run's own write, not a rotation, so
// the next run imports and activates it instead of calling KV stale.
func TestADKIMKeyLeftPendingIsActivatedByTheNextRun(t *testing.T) {
	x := &fixture{f: newFake()}
	x.f.put("dkim/t1/example.com", map[string]interface{}{"private_key": rsaPEM(t, 2048), "selector": "pm"})
	x.run(t, true, false)
	x.f.put("dkim/t1/example.com", map[string]interface{}{"private_key": rsaPEM(t, 2048), "selector": "pm2"})
	x.f.failWrite = func(path string, _ map[string]interface{}) error {
		if strings.HasSuffix(path, "/activate") {
			return errors.New("503: Vault is sealed")
		}
		return nil
	}
	if sum, out := x.run(t, true, false); sum.Failed != 1 {
		t.Fatalf("activation refused: %+v\n%s", sum, out)
	}
	x.f.failWrite = nil
	sum, out := x.run(t, true, false)
	d := x.f.engine["penguinmails/dkim/t1/example.com"]
	if sum != (Summary{Updated: 1}) || d.pending != nil || d.fields["selector"] != "pm2" {
		t.Fatalf("next run: %+v, pending %v, selector %v\n%s", sum, d.pending != nil, d.fields["selector"], out)
	}
}
