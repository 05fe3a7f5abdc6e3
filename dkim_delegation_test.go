package penguinmails

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck/dnsfake"
)

const (
	delegZone   = "dkim.platform.example"
	delegDomain = "customer.com"
	delegPath   = "dkim/tenant-1/customer.com"
)

// newDNS starts a fake resolver for the test.
func newDNS(t *testing.T) *dnsfake.Server {
	t.Helper()
	f, err := dnsfake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// serve publishes what the dns path asks for: the customer's CNAMEs once,
// and the platform's TXT records to publish and revoke.
func serve(env *testEnv, f *dnsfake.Server, path string) map[string]interface{} {
	env.t.Helper()
	out := env.ok(logical.ReadOperation, path+"/dns", nil)
	if cn, ok := out["delegation"].([]interface{}); ok {
		for _, r := range cn {
			rec := r.(map[string]interface{})
			f.SetCNAME(rec["name"].(string), rec["value"].(string))
		}
	}
	for _, list := range []string{"publish", "revoke"} {
		for _, r := range out[list].([]interface{}) {
			rec := r.(map[string]interface{})
			f.SetTXT(rec["name"].(string), rec["value"].(string))
		}
	}
	return out
}

// resolve looks a name up through the fake as a receiver's resolver does,
// following the customer's CNAME.
func resolve(f *dnsfake.Server) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		a, err := dnscheck.Lookup(context.Background(), dnscheck.Resolver{Addr: f.Addr()}, name)
		return a.Records, err
	}
}

func signedVia(env *testEnv, path, algorithm string) string {
	env.t.Helper()
	out := env.ok(logical.UpdateOperation, path+"/sign", map[string]interface{}{
		"message": base64.StdEncoding.EncodeToString([]byte(testMessage)), "algorithm": algorithm})
	return out["dkim_signature"].(string) + testMessage
}

// A delegated domain: the customer publishes two CNAMEs once; the platform
// publishes TXT records in its zone; DNS-verified activation checks the
// platform zone; rotations alternate between the two selectors, and a
// receiver that follows the CNAME verifies every signature.
func TestDKIMDelegation_CNAMEsOnceAndAlternatingSelectors(t *testing.T) {
	env := newTestEnv(t)
	f := newDNS(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_delegation_zone": delegZone,
		"dns_resolvers": f.Addr(), "dkim_activation": "dns"})
	env.ok(logical.UpdateOperation, delegPath, map[string]interface{}{"key_type": "ed25519"})
	out := serve(env, f, delegPath)
	cnames := out["delegation"].([]interface{})
	if len(cnames) != 2 {
		t.Fatalf("delegation: %v", cnames)
	}
	for i, want := range []string{"pm1", "pm2"} {
		rec := cnames[i].(map[string]interface{})
		if rec["name"] != want+"._domainkey.customer.com" || rec["type"] != "CNAME" || rec["value"] != want+".customer.com."+delegZone {
			t.Fatalf("CNAME %d: %v", i, rec)
		}
	}
	pub := out["publish"].([]interface{})[0].(map[string]interface{})
	if pub["name"] != "pm1.customer.com."+delegZone || pub["status"] != statusPending {
		t.Fatalf("publish: %v", pub)
	}
	env.tick() // the platform record is visible at the resolver: activated
	signed := signedVia(env, delegPath, "")
	if _, err := dkimcheck.VerifyAll(resolve(f), signed, 1); err != nil {
		t.Fatalf("signature through the customer's CNAME: %v", err)
	}
	cnameQueries := f.Queries("pm1._domainkey.customer.com")

	// Rotation uses pm2, behind the CNAME the customer already has.
	env.ok(logical.UpdateOperation, delegPath+"/rotate", nil)
	serve(env, f, delegPath)
	env.clock.Advance(activationRetryBase)
	env.tick()
	read := env.ok(logical.ReadOperation, delegPath, nil)
	if read["selector"] != "pm2" || read["status"] != statusActive {
		t.Fatalf("after rotation: selector %v status %v", read["selector"], read["status"])
	}
	if _, err := dkimcheck.VerifyAll(resolve(f), signedVia(env, delegPath, ""), 1); err != nil {
		t.Fatalf("signature with pm2: %v", err)
	}
	if f.Queries("pm1._domainkey.customer.com") <= cnameQueries && f.Queries("pm2._domainkey.customer.com") == 0 {
		t.Fatal("the receiver did not resolve through the customer's names")
	}

	// pm1 is still in its overlap: the next rotation must wait.
	resp, err := env.do(logical.UpdateOperation, delegPath+"/rotate", nil)
	if code := statusOf(logical.UpdateOperation, resp, err); code != 409 || !strings.Contains(err.Error(), "selector pm1 is still in use") {
		t.Fatalf("rotation during pm1's overlap: %d %v", code, err)
	}
	env.clock.Advance(49 * 3600e9)
	env.tick()
	env.ok(logical.UpdateOperation, delegPath+"/rotate", nil)
	out = env.ok(logical.ReadOperation, delegPath+"/dns", nil)
	names := map[string]int{}
	for _, list := range []string{"publish", "revoke", "remove"} {
		for _, r := range out[list].([]interface{}) {
			names[r.(map[string]interface{})["name"].(string)]++
		}
	}
	if names["pm1.customer.com."+delegZone] != 1 {
		t.Fatalf("pm1's record is listed %d times after its reuse, want once (the new key): %v", names["pm1.customer.com."+delegZone], out)
	}
	if resp, _ := env.do(logical.UpdateOperation, delegPath, map[string]interface{}{"selector": "mine"}); resp == nil || !resp.IsError() ||
		!strings.Contains(resp.Error().Error(), "two fixed selectors") {
		t.Fatalf("choosing a selector on a delegated domain: %v", resp)
	}
}

// A dual-algorithm domain holds an RSA and an Ed25519 key per version, each
// with its own selector and record; sign returns both signatures, and each
// verifies against the published records.
func TestDKIMDual_SignsWithBoth(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	f := newDNS(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"dual_algorithm": true})
	read := env.ok(logical.ReadOperation, dkimPath, nil)
	if read["key_type"] != "rsa-2048" || read["ed25519_selector"] != read["selector"].(string)+companionSuffix {
		t.Fatalf("read: key_type %v ed25519_selector %v", read["key_type"], read["ed25519_selector"])
	}
	out := serve(env, f, dkimPath)
	if n := len(out["publish"].([]interface{})); n != 2 {
		t.Fatalf("publish has %d records, want 2", n)
	}
	sign := env.ok(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{
		"message": base64.StdEncoding.EncodeToString([]byte(testMessage)), "algorithm": "both"})
	if hs := sign["dkim_signatures"].([]interface{}); len(hs) != 2 || !strings.Contains(hs[0].(string), "a=rsa-sha256") ||
		!strings.Contains(hs[1].(string), "a=ed25519-sha256") {
		t.Fatalf("signatures: %v", sign["dkim_signatures"])
	}
	if _, err := dkimcheck.VerifyAll(resolve(f), sign["dkim_signature"].(string)+testMessage, 2); err != nil {
		t.Fatalf("both signatures: %v", err)
	}
	if _, err := dkimcheck.VerifyAll(resolve(f), signedVia(env, dkimPath, "ed25519"), 1); err != nil {
		t.Fatalf("ed25519 alone: %v", err)
	}
	pem := env.ok(logical.UpdateOperation, dkimPath+"/private", map[string]interface{}{"algorithm": "ed25519"})
	if pem["key_type"] != "ed25519" || pem["selector"] != read["ed25519_selector"] {
		t.Fatalf("ed25519 export: %v %v", pem["key_type"], pem["selector"])
	}
	// Rotation renews both keys; after the grace both old private keys go.
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
	serve(env, f, dkimPath)
	if _, err := dkimcheck.VerifyAll(resolve(f), signedVia(env, dkimPath, "both"), 2); err != nil {
		t.Fatalf("both after rotation: %v", err)
	}
	env.clock.Advance(49 * 3600e9)
	env.tick()
	resp, err := env.do(logical.UpdateOperation, dkimPath+"/private", map[string]interface{}{"algorithm": "ed25519", "version": 1})
	if code := statusOf(logical.UpdateOperation, resp, err); code != 404 {
		t.Fatalf("ed25519 key of a retired version: %d", code)
	}
	for _, bad := range []map[string]interface{}{{"algorithm": "both"}, {"algorithm": "dsa"}} {
		in := map[string]interface{}{"message": base64.StdEncoding.EncodeToString([]byte(testMessage))}
		for k, v := range bad {
			in[k] = v
		}
		if bad["algorithm"] == "both" {
			env.ok(logical.UpdateOperation, dkimPath+"/sign", in) // fine here
			continue
		}
		if msg := env.badRequest(logical.UpdateOperation, dkimPath+"/sign", in); !strings.Contains(msg, "algorithm") {
			t.Fatalf("bad algorithm: %q", msg)
		}
	}
	env2 := newImmediateDKIMEnv(t)
	if msg := env2.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"dual_algorithm": true, "key_type": "ed25519"}); !strings.Contains(msg, "dual_algorithm") {
		t.Fatalf("dual with ed25519 key_type: %q", msg)
	}
}

// A domain cannot ask for DNS-verified activation while no resolver is
// configured: it would stay pending until its deadline.
func TestDKIMActivation_PerSecretDNSNeedsResolvers(t *testing.T) {
	env := newTestEnv(t)
	msg := env.badRequest(logical.CreateOperation, dkimPath, map[string]interface{}{"activation": "dns"})
	if !strings.Contains(msg, "activation=dns needs dns_resolvers") {
		t.Fatalf("activation=dns without resolvers: %q", msg)
	}
	if resp, _ := env.do(logical.ReadOperation, dkimPath, nil); resp != nil {
		t.Fatal("the refused write stored the key")
	}
}
