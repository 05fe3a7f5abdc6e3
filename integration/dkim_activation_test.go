package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck/dnsfake"
)

// TestDKIM_ActivationByDNSThroughRealVault runs issue #12's staged
// activation in the real server against a DNS server on loopback: a key
// written with activation=dns stays pending and never signs until the
// resolver serves its record, Vault's periodic work then activates it, and
// a rotation switches the signing selector only once the new record is
// served.
func TestDKIM_ActivationByDNSThroughRealVault(t *testing.T) {
	t.Parallel() // waits for Vault's periodic calls; runs beside the other waits
	const path = mount + "/dkim/tenant-act/example.org"
	fake, err := dnsfake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	useResolver(t, fake.Addr())
	t.Cleanup(func() { _, _ = runVault("delete", path) })

	// activation=dns on this secret only: the mount-wide default is left
	// alone for the tests running beside this one.
	vaultCLI(t, "write", path, "key_type=ed25519", "activation=dns")
	got := cliData(t, "read", path)
	if got["status"] != "pending" || num(got["version"]) != 1 {
		t.Fatalf("a new key with activation=dns: status %v version %v, want pending 1", got["status"], got["version"])
	}
	out := vaultCLIFails(t, "write", path+"/sign", "message="+base64.StdEncoding.EncodeToString([]byte(dkimMessage)))
	if !strings.Contains(out, "Code: 409") || !strings.Contains(out, "awaits activation") {
		t.Fatalf("sign with a pending first key:\n%s", out)
	}

	first := pendingRecord(t, path)
	fake.SetTXT(first.name, first.value)
	waitActive(t, path, 1, first.selector)
	if fake.Queries(first.name) == 0 {
		t.Fatalf("version 1 activated without a query for %s", first.name)
	}
	signed := signSelector(t, path, first.selector)
	if err := dkimcheck.Verify(servedRecords(t, fake, first.name), signed); err != nil {
		t.Fatalf("signature after activation, verified from the served record: %v", err)
	}

	// Rotate: the new key is pending and sign keeps the old selector.
	rot := cliData(t, "write", path+"/rotate", "reason=integration activation")
	if num(rot["version"]) != 2 || num(rot["previous_version"]) != 1 || rot["status"] != "pending" {
		t.Fatalf("rotate: %v", rot)
	}
	if s := versionStatus(t, path, 2); s != "pending" {
		t.Fatalf("version 2 after rotate is %q, want pending", s)
	}
	second := pendingRecord(t, path)
	if second.selector == first.selector {
		t.Fatalf("the rotation kept selector %s", first.selector)
	}
	signSelector(t, path, first.selector)

	fake.SetTXT(second.name, second.value)
	waitActive(t, path, 2, second.selector)
	signed = signSelector(t, path, second.selector)
	if err := dkimcheck.Verify(servedRecords(t, fake, first.name, second.name), signed); err != nil {
		t.Fatalf("signature after the rotation's activation: %v", err)
	}
	if s := versionStatus(t, path, 1); s != "retiring" {
		t.Fatalf("version 1 after version 2's activation is %q, want retiring", s)
	}

	// Both records are published as the resolver shows them.
	checked := cliData(t, "read", path+"/dns", "check=true")
	publish, _ := checked["publish"].([]interface{})
	if len(publish) != 2 {
		t.Fatalf("dns check=true publish %v, want the two records", checked["publish"])
	}
	for _, item := range publish {
		rec := item.(map[string]interface{})
		per, _ := rec["dns"].([]interface{})
		if len(per) != 1 || per[0].(map[string]interface{})["status"] != "published" || num(rec["dns_published"]) != 1 {
			t.Errorf("dns check=true for %v: %v", rec["name"], rec["dns"])
		}
	}
}

// useResolver points config dns_resolvers at addr for this test, and puts
// back what was there when it ends.
func useResolver(t *testing.T, addr string) {
	t.Helper()
	before, err := client.Logical().Read(mount + "/config")
	if err != nil || before == nil {
		t.Fatalf("read config: %v %v", before, err)
	}
	old := []string{}
	for _, r := range before.Data["dns_resolvers"].([]interface{}) {
		old = append(old, r.(string))
	}
	vaultCLI(t, "write", mount+"/config", "dns_resolvers="+addr)
	t.Cleanup(func() {
		if _, err := client.Logical().Write(mount+"/config", map[string]interface{}{"dns_resolvers": old}); err != nil {
			t.Errorf("restoring dns_resolvers %v: %v", old, err)
		}
	})
}

// dnsRecord is one TXT record as {domain}/dns lists it.
type dnsRecord struct{ name, value, selector string }

// pendingRecord is the pending key's record in dns's publish list, read
// through the CLI as an operator would before publishing it.
func pendingRecord(t *testing.T, path string) dnsRecord {
	t.Helper()
	got := cliData(t, "read", path+"/dns")
	for _, item := range got["publish"].([]interface{}) {
		rec := item.(map[string]interface{})
		if rec["status"] != "pending" {
			continue
		}
		var joined strings.Builder
		for _, part := range rec["txt_strings"].([]interface{}) {
			joined.WriteString(part.(string))
		}
		if joined.String() != rec["value"] {
			t.Fatalf("txt_strings of %v do not join to its value", rec["name"])
		}
		return dnsRecord{name: rec["name"].(string), value: rec["value"].(string), selector: rec["selector"].(string)}
	}
	t.Fatalf("no pending record under publish: %v", got["publish"])
	return dnsRecord{}
}

// versionStatus is a version's status as vault read shows it.
func versionStatus(t *testing.T, path string, version int) string {
	t.Helper()
	got := cliData(t, "read", path)
	v, _ := got["versions"].(map[string]interface{})[fmt.Sprint(version)].(map[string]interface{})
	s, _ := v["status"].(string)
	return s
}

// waitActive polls vault read until version is the active key with
// selector: only Vault's periodic work can activate it. The first check
// runs at the next periodic call and misses back off from one minute, so
// this can take two calls.
func waitActive(t *testing.T, path string, version int, selector string) {
	t.Helper()
	err := pollEvery(periodicLimit, 2*time.Second, func() error {
		got := cliData(t, "read", path)
		if got["status"] != "active" || num(got["version"]) != version || got["active_selector"] != selector {
			return fmt.Errorf("version %v status %v active selector %v", got["version"], got["status"], got["active_selector"])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for version %d to activate: %v", version, err)
	}
}

// signSelector signs dkimMessage through the CLI, checks that the selector
// named is the one that signed, and returns the signed message.
func signSelector(t *testing.T, path, selector string) string {
	t.Helper()
	got := cliData(t, "write", path+"/sign", "message="+base64.StdEncoding.EncodeToString([]byte(dkimMessage)))
	header, _ := got["dkim_signature"].(string)
	if got["selector"] != selector || !strings.Contains(header, "s="+selector+";") {
		t.Fatalf("signed with selector %v (header %q), want %s", got["selector"], header, selector)
	}
	return strings.TrimRight(header, "\r\n") + "\r\n" + dkimMessage
}

// servedRecords asks the fake resolver for names, as a receiver would, and
// returns what it serves: name -> the one TXT record.
func servedRecords(t *testing.T, fake *dnsfake.Server, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range names {
		ans, err := dnscheck.Lookup(context.Background(), dnscheck.Resolver{Addr: fake.Addr()}, name)
		if err != nil || len(ans.Records) != 1 {
			t.Fatalf("lookup of %s at the fake: %v %v", name, ans, err)
		}
		out[name] = ans.Records[0]
	}
	return out
}
