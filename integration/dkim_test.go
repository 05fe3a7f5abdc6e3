package integration

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
)

// dkimMessage is a small RFC 5322 message with CRLF line ends.
const dkimMessage = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.org>\r\n" +
	"Subject: Integration\r\n" +
	"Date: Sun, 29 Nov 2026 09:00:00 +0000\r\n" +
	"Message-ID: <it-1@example.com>\r\n" +
	"\r\n" +
	"Signed inside Vault.\r\n"

// publishedRecords reads {domain}/dns with the Go client and returns the TXT
// records to publish as a resolver would serve them: name -> joined strings.
func publishedRecords(t testing.TB, l *api.Logical, path string) map[string]string {
	t.Helper()
	s, err := l.Read(path + "/dns")
	if err != nil || s == nil {
		t.Fatalf("read %s/dns: %v %v", path, s, err)
	}
	records := map[string]string{}
	for _, r := range s.Data["publish"].([]interface{}) {
		rec := r.(map[string]interface{})
		var joined strings.Builder
		for _, part := range rec["txt_strings"].([]interface{}) {
			if len(part.(string)) > 255 {
				t.Fatalf("TXT string longer than 255 bytes in %v", rec["name"])
			}
			joined.WriteString(part.(string))
		}
		records[rec["name"].(string)] = joined.String()
	}
	return records
}

// signWithVault signs msg through {domain}/sign and returns the signed message.
func signWithVault(t testing.TB, l *api.Logical, path, msg string, extra map[string]interface{}) string {
	t.Helper()
	in := map[string]interface{}{"message": base64.StdEncoding.EncodeToString([]byte(msg))}
	for k, v := range extra {
		in[k] = v
	}
	s, err := l.Write(path+"/sign", in)
	if err != nil || s == nil {
		t.Fatalf("sign %s: %v", path, err)
	}
	return s.Data["dkim_signature"].(string) + msg
}

// rememberPrivateKey marks the base64 lines of a PEM key as secrets that the
// Vault log must never contain.
func rememberPrivateKey(pemText string) {
	for _, line := range strings.Split(pemText, "\n") {
		if len(line) == 64 {
			rememberSecret(line)
		}
	}
}

// TestDKIM_UserFlowThroughCLI runs the commands as a user types them.
func TestDKIM_UserFlowThroughCLI(t *testing.T) {
	const path = mount + "/dkim/tenant-1/example.com"
	l := client.Logical()
	t.Cleanup(func() { _, _ = runVault("delete", path) })

	// The exact command. The vault CLI refuses a write with no
	// key=value pair on its own side ("use -force"), before any request.
	out, err := runVault("write", path)
	if err == nil || !strings.Contains(out, "Must supply data or use -force") {
		t.Fatalf("vault write %s without fields: err %v\n%s", path, err, out)
	}
	if s, err := l.List(mount + "/dkim/tenant-1"); err != nil || s != nil {
		t.Fatalf("the refused command stored something: %v %v", s, err)
	}

	// With -f the CLI sends the empty write; the key is generated in Vault.
	// It is pending until activated, as the README's next step does.
	table := vaultCLI(t, "write", "-f", path)
	for _, field := range []string{"selector", "record_name", "txt_value", "txt_strings", "key_type"} {
		if !strings.Contains(table, "\n"+field+" ") {
			t.Errorf("write output lacks %q:\n%s", field, table)
		}
	}
	if strings.Contains(table, "PRIVATE KEY") {
		t.Fatal("the write answered the private key")
	}

	vaultCLI(t, "write", "-f", path+"/activate")
	got := cliData(t, "read", path)
	selector, _ := got["active_selector"].(string)
	if got["domain"] != "example.com" || got["key_type"] != "rsa-2048" || selector == "" ||
		got["record_name"] != selector+"._domainkey.example.com" || num(got["version"]) != 1 {
		t.Fatalf("read: %v", got)
	}
	if txt, _ := got["txt_value"].(string); !strings.HasPrefix(txt, "v=DKIM1; k=rsa; p=") {
		t.Fatalf("txt_value %q", txt)
	}

	// Sign through the CLI, verify from the dns path's records.
	sig := vaultCLI(t, "write", "-field=dkim_signature", path+"/sign",
		"message="+base64.StdEncoding.EncodeToString([]byte(dkimMessage)))
	signed := strings.TrimRight(sig, "\r\n") + "\r\n" + dkimMessage
	records := publishedRecords(t, l, path)
	if err := dkimcheck.Verify(records, signed); err != nil {
		t.Fatalf("CLI signature: %v", err)
	}
	if err := dkimcheck.Verify(records, strings.Replace(signed, "Signed inside", "Signed outside", 1)); err == nil {
		t.Fatal("a changed body verifies")
	}

	// The exported key parses and is the published one.
	pemText := vaultCLI(t, "write", "-f", "-field=private_key", path+"/private")
	rememberPrivateKey(pemText)
	if pub := publicKeyOf(t, pemText); !strings.HasSuffix(got["txt_value"].(string), "p="+pub) {
		t.Fatal("the exported private key does not match the published record")
	}

	// Rotate with the Go client: new selector, the old key retiring and
	// still published, so mail signed before the rotation keeps verifying.
	// activation=immediate: this test is about the life after activation.
	vaultCLI(t, "write", path, "activation=immediate")
	rot, err := l.Write(path+"/rotate", map[string]interface{}{"reason": "integration"})
	if err != nil || fmt.Sprint(rot.Data["version"]) != "2" {
		t.Fatalf("rotate: %v %v", rot, err)
	}
	cur, err := l.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	v1 := cur.Data["versions"].(map[string]interface{})["1"].(map[string]interface{})
	if cur.Data["active_selector"] == selector || v1["status"] != "retiring" || v1["selector"] != selector {
		t.Fatalf("after rotate: active %v, version 1 %v", cur.Data["active_selector"], v1)
	}
	records = publishedRecords(t, l, path)
	if len(records) != 2 {
		t.Fatalf("during grace %d records to publish, want 2", len(records))
	}
	newSigned := signWithVault(t, l, path, dkimMessage, nil)
	for name, m := range map[string]string{"pre-rotation": signed, "post-rotation": newSigned} {
		if err := dkimcheck.Verify(records, m); err != nil {
			t.Fatalf("%s signature during grace: %v", name, err)
		}
	}

	if s, err := l.List(mount + "/dkim/tenant-1"); err != nil || fmt.Sprint(s.Data["keys"]) != "[example.com]" {
		t.Fatalf("list tenant-1: %v %v", s, err)
	}
	if s, err := l.List(mount + "/dkim"); err != nil || !strings.Contains(fmt.Sprint(s.Data["keys"]), "tenant-1") {
		t.Fatalf("list dkim: %v %v", s, err)
	}

	vaultCLI(t, "delete", path)
	if s, err := l.Read(path); s != nil || err != nil {
		t.Fatalf("read after delete: %v %v", s, err)
	}
}

// publicKeyOf parses a PKCS#8 PEM key and encodes its public key as p=.
func publicKeyOf(t *testing.T, pemText string) string {
	t.Helper()
	key, err := dkimcheck.ParsePrivateKey(pemText)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := dkimcheck.PublicKeyTag(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// TestDKIM_PolicyMaySignButNotExport shows that sign and private are
// separate capabilities, and that exportable=false holds even for root.
func TestDKIM_PolicyMaySignButNotExport(t *testing.T) {
	const path = mount + "/dkim/tenant-pol/example.net"
	l := client.Logical()
	if _, err := l.Write(path, map[string]interface{}{"key_type": "ed25519", "activation": "immediate"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })
	policy := `path "` + mount + `/dkim/tenant-pol/+/sign" { capabilities = ["update"] }
path "` + mount + `/dkim/tenant-pol/+/dns" { capabilities = ["read"] }`
	if err := client.Sys().PutPolicy("dkim-signer", policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Sys().DeletePolicy("dkim-signer") })
	tok, err := client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"dkim-signer"}})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	signer.SetToken(tok.Auth.ClientToken)

	signed := signWithVault(t, signer.Logical(), path, dkimMessage, nil)
	if err := dkimcheck.Verify(publishedRecords(t, signer.Logical(), path), signed); err != nil {
		t.Fatal(err)
	}
	if _, err := signer.Logical().Write(path+"/private", nil); statusCode(err) != 403 {
		t.Fatalf("export with a sign-only token: %v, want 403", err)
	}

	// exportable=false is refused whatever the token.
	if _, err := l.Write(path, map[string]interface{}{"exportable": false}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write(path+"/private", nil); statusCode(err) != 400 || !strings.Contains(err.Error(), "exportable=false") {
		t.Fatalf("export of a non-exportable key as root: %v, want a 400", err)
	}
	signed = signWithVault(t, signer.Logical(), path, dkimMessage, nil)
	if err := dkimcheck.Verify(publishedRecords(t, l, path), signed); err != nil {
		t.Fatal(err)
	}
}

// TestDKIM_ZeroGraceRetiresAtOnce exercises retirement in the real server
// without waiting: with dkim_grace_period=0 the rotation itself retires the
// old key and deletes its private key.
func TestDKIM_ZeroGraceRetiresAtOnce(t *testing.T) {
	const path = mount + "/dkim/tenant-grace/example.com"
	l := client.Logical()
	if _, err := l.Write(mount+"/config", map[string]interface{}{"dkim_grace_period": 0}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Write(mount+"/config", map[string]interface{}{"dkim_grace_period": "48h"}) })
	if _, err := l.Write(path, map[string]interface{}{"key_type": "ed25519", "activation": "immediate"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })
	before := signWithVault(t, l, path, dkimMessage, nil)
	if _, err := l.Write(path+"/rotate", map[string]interface{}{"reason": "no grace"}); err != nil {
		t.Fatal(err)
	}
	records := publishedRecords(t, l, path)
	if len(records) != 1 || dkimcheck.Verify(records, before) == nil {
		t.Fatalf("with no grace the old key is still published: %v", records)
	}
	// The ended key is listed as revoked (empty p=) for
	// dkim_revocation_period before it is listed for removal.
	dns, _ := l.Read(path + "/dns")
	revoke := dns.Data["revoke"].([]interface{})
	if len(revoke) != 1 || revoke[0].(map[string]interface{})["value"] != "v=DKIM1; p=" || len(dns.Data["remove"].([]interface{})) != 0 {
		t.Fatalf("revoke = %v, remove = %v", revoke, dns.Data["remove"])
	}
	if _, err := l.Write(path+"/private", map[string]interface{}{"version": 1}); statusCode(err) != 404 {
		t.Fatalf("private key of the retired version: %v, want 404", err)
	}
}

// TestDKIM_DomainsAndBadInput checks domain handling and refusals through
// both clients.
func TestDKIM_DomainsAndBadInput(t *testing.T) {
	l := client.Logical()
	t.Cleanup(func() { _, _ = l.Delete(mount + "/dkim/tenant-idn/xn--bcher-kva.example") })
	got := cliData(t, "write", mount+"/dkim/tenant-idn/xn--bcher-kva.example", "key_type=ed25519")
	if got["domain"] != "xn--bcher-kva.example" || got["domain_unicode"] != "bücher.example" {
		t.Fatalf("punycode domain shown as %v (%v)", got["domain"], got["domain_unicode"])
	}
	if s, err := l.List(mount + "/dkim/tenant-idn"); err != nil || fmt.Sprint(s.Data["keys"]) != "[xn--bcher-kva.example]" {
		t.Fatalf("list: %v %v", s, err)
	}

	out := vaultCLIFails(t, "write", mount+"/dkim/tenant-bad/example.com", "key_type=rsa-1024")
	if !strings.Contains(out, "Code: 400") || !strings.Contains(out, "key_type") || !strings.Contains(out, "2048") {
		t.Fatalf("CLI key_type=rsa-1024:\n%s", out)
	}
	for domain, mention := range map[string]string{
		"exa mple.com":                           "domain",
		strings.Repeat("a", 64) + ".com":         "63",
		"xn--zz.com":                             "punycode",
		strings.Repeat("abcdefghi.", 26) + "com": "253",
	} {
		_, err := l.Write(mount+"/dkim/tenant-bad/"+domain, map[string]interface{}{"key_type": "ed25519"})
		if statusCode(err) != 400 || !strings.Contains(err.Error(), mention) {
			t.Errorf("domain %q: %v, want a 400 mentioning %q", domain, err, mention)
		}
	}
	if s, err := l.List(mount + "/dkim/tenant-bad"); err != nil || s != nil {
		t.Fatalf("refused writes stored something: %v %v", s, err)
	}
}

// TestDKIM_HardeningThroughRealVault checks issue #7's DKIM findings in the
// real server: one spelling per domain, one owner per domain, export by
// update only, the sign size limit, no tag injection, and revoke.
func TestDKIM_HardeningThroughRealVault(t *testing.T) {
	const path = mount + "/dkim/tenant-h1/bank.example"
	l := client.Logical()
	if _, err := l.Write(path, map[string]interface{}{"key_type": "ed25519", "activation": "immediate"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })

	t.Run("non-canonical spellings name the canonical path", func(t *testing.T) {
		good := base64.StdEncoding.EncodeToString([]byte(dkimMessage))
		for _, spelling := range []string{"BANK.example", "bank.example.", "\uff42\uff41\uff4e\uff4b.example"} {
			p := mount + "/dkim/tenant-h1/" + spelling
			_, errRead := readRaw(l, p, nil)
			_, errSign := l.Write(p+"/sign", map[string]interface{}{"message": good})
			_, errPriv := l.Write(p+"/private", nil)
			_, errDNS := readRaw(l, p+"/dns", nil)
			for what, err := range map[string]error{"read": errRead, "sign": errSign, "private": errPriv, "dns": errDNS} {
				if statusCode(err) != 400 && !strings.Contains(fmt.Sprint(err), "status 400") {
					t.Errorf("%s %q: %v, want a 400", what, spelling, err)
				}
				if !strings.Contains(fmt.Sprint(err), "use dkim/tenant-h1/bank.example") {
					t.Errorf("%s %q: %v does not name the canonical path", what, spelling, err)
				}
			}
		}
		out := vaultCLIFails(t, "write", "-f", mount+"/dkim/tenant-h1/BANK.example/private")
		if !strings.Contains(out, "Code: 400") || !strings.Contains(out, "use dkim/tenant-h1/bank.example") {
			t.Fatalf("CLI with BANK.example:\n%s", out)
		}
		_, err := l.Write(path, map[string]interface{}{"selector": "MAIL1"})
		if statusCode(err) != 400 || !strings.Contains(err.Error(), `"mail1"`) {
			t.Fatalf("selector MAIL1: %v", err)
		}
	})

	t.Run("a second tenant's create is 409", func(t *testing.T) {
		_, err := l.Write(mount+"/dkim/tenant-h2/bank.example", map[string]interface{}{"key_type": "ed25519"})
		if statusCode(err) != 409 || !strings.Contains(err.Error(), "dkim/tenant-h1/bank.example") {
			t.Fatalf("second tenant: %v, want a 409 naming the owner", err)
		}
		if s, err := l.List(mount + "/dkim/tenant-h2"); err != nil || s != nil {
			t.Fatalf("the refused create stored something: %v %v", s, err)
		}
		owner, err := l.Read(mount + "/dkim-domains/bank.example")
		if err != nil || owner == nil || owner.Data["owner"] != "tenant-h1" {
			t.Fatalf("dkim-domains read: %v %v", owner, err)
		}
	})

	t.Run("private is refused by read and given by write", func(t *testing.T) {
		if _, err := l.Read(path + "/private"); statusCode(err) != 405 {
			t.Fatalf("read of private: %v, want 405", err)
		}
		s, err := l.Write(path+"/private", nil)
		if err != nil || s == nil {
			t.Fatalf("write of private: %v", err)
		}
		pemText := s.Data["private_key"].(string)
		rememberPrivateKey(pemText)
		if pub := publicKeyOf(t, pemText); s.Data["selector"] == "" || !strings.HasSuffix(publishedRecords(t, l, path)[fmt.Sprint(s.Data["record_name"])], "p="+pub) {
			t.Fatal("the exported key is not the published one")
		}
	})

	t.Run("an oversize sign is 413", func(t *testing.T) {
		if _, err := l.Write(mount+"/config", map[string]interface{}{"dkim_sign_max_message_bytes": 1024}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = l.Write(mount+"/config", map[string]interface{}{"dkim_sign_max_message_bytes": 4 << 20})
		})
		big := dkimMessage + strings.Repeat("x", 1024)
		_, err := l.Write(path+"/sign", map[string]interface{}{"message": base64.StdEncoding.EncodeToString([]byte(big))})
		if statusCode(err) != 413 || !strings.Contains(err.Error(), "dkim_sign_max_message_bytes") || !strings.Contains(err.Error(), "1024") {
			t.Fatalf("oversize sign: %v, want a 413 naming the limit", err)
		}
		if err := dkimcheck.Verify(publishedRecords(t, l, path), signWithVault(t, l, path, dkimMessage, nil)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("header tag injection is a 400", func(t *testing.T) {
		_, err := l.Write(path+"/sign", map[string]interface{}{
			"message": base64.StdEncoding.EncodeToString([]byte(dkimMessage)),
			"headers": "From,Subject;d=evil.example;s=x",
		})
		if statusCode(err) != 400 || !strings.Contains(err.Error(), "headers") || !strings.Contains(err.Error(), "RFC 7230") {
			t.Fatalf("header injection: %v, want a 400", err)
		}
	})

	t.Run("revoke moves the selector to the revoke list", func(t *testing.T) {
		cur, err := l.Read(path)
		if err != nil || cur == nil {
			t.Fatal(err)
		}
		selector := cur.Data["active_selector"].(string)
		if _, err := l.Write(path+"/revoke", map[string]interface{}{"reason": "integration", "incident_id": "INC-IT-7"}); err != nil {
			t.Fatal(err)
		}
		dns, err := l.Read(path + "/dns")
		if err != nil || dns == nil {
			t.Fatal(err)
		}
		revoke := dns.Data["revoke"].([]interface{})
		if len(revoke) != 1 || len(dns.Data["publish"].([]interface{})) != 0 {
			t.Fatalf("dns after revoke: %v", dns.Data)
		}
		rec := revoke[0].(map[string]interface{})
		if rec["name"] != selector+"._domainkey.bank.example" || rec["value"] != "v=DKIM1; p=" {
			t.Fatalf("revoke record %v", rec)
		}
		_, err = l.Write(path+"/sign", map[string]interface{}{"message": base64.StdEncoding.EncodeToString([]byte(dkimMessage))})
		if statusCode(err) != 409 || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("sign after revoke: %v, want a 409", err)
		}
	})
}
