package penguinmails

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
)

// A warm sign reads nothing from storage and parses no key.
func TestDKIMSign_WarmSignReadsNoStorageAndParsesNoKey(t *testing.T) {
	env := newEngEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_activation": "immediate"})
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	sign := func() {
		if sig, _ := env.ok(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"message": b64(testMessage)})["dkim_signature"].(string); !strings.Contains(sig, "d=example.com") {
			t.Fatalf("sign returned %q", sig)
		}
	}
	sign()
	parses := env.b.signers.parses.Load()
	if parses != 1 {
		t.Fatalf("the first sign parsed %d keys, want 1", parses)
	}
	env.s.resetCounts()
	for range 5 {
		sign()
	}
	if n := env.s.getsUnder(""); n != 0 {
		t.Fatalf("5 warm signs made %d storage Gets, want 0", n)
	}
	if n := env.b.signers.parses.Load(); n != parses {
		t.Fatalf("5 warm signs parsed %d more keys, want 0", n-parses)
	}
}

// Rotation, the end of the overlap and revocation are honoured by a sign
// whose entry and key are cached.
func TestDKIMSign_VersionStatesHonouredWhenWarm(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519", "selector": "old1"})
	before := env.signVia(dkimPath, testMessage, nil)
	if !strings.Contains(before, "s=old1;") {
		t.Fatalf("signed with %q", before[:80])
	}
	env.signVia(dkimPath, testMessage, nil)                                                         // warm
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "yearly"}) // old1 retiring
	after := env.signVia(dkimPath, testMessage, nil)
	if strings.Contains(after, "s=old1;") {
		t.Fatal("a warm sign after a rotation still uses the retiring key")
	}
	if err := dkimcheck.Verify(env.publishedTXT(dkimPath), after); err != nil {
		t.Fatalf("signature after rotation: %v", err)
	}
	env.clock.Advance(49 * time.Hour) // past the 48h grace: old1 retired on read
	env.signVia(dkimPath, testMessage, nil)
	env.ok(logical.UpdateOperation, dkimPath+"/revoke", map[string]interface{}{"reason": "leaked"})
	resp, err := env.do(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"message": b64(testMessage)})
	if code := statusOf(logical.UpdateOperation, resp, err); code != 409 {
		t.Fatalf("sign after revoke: status %d (%v %v), want 409", code, resp, err)
	}
	resp, err = env.do(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{
		"batch_input": []interface{}{map[string]interface{}{"message": b64(testMessage)}}})
	if code := statusOf(logical.UpdateOperation, resp, err); code != 409 {
		t.Fatalf("batch sign after revoke: status %d, want 409", code)
	}
}

func TestDKIMSign_BatchKeepsOrderAndIsolatesFailures(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "rsa-2048", "dual_algorithm": true})
	records := env.publishedTXT(dkimPath)
	msgs := []string{
		testMessage,
		strings.Replace(testMessage, "Quarterly numbers", "Second", 1),
		strings.Replace(testMessage, "Quarterly numbers", "Third", 1),
	}
	out := env.ok(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{
		"headers": "from,subject",
		"batch_input": []interface{}{
			map[string]interface{}{"message": b64(msgs[0])},
			map[string]interface{}{"message": "not base64!"},
			map[string]interface{}{"message": b64(msgs[1]), "algorithm": "ed25519", "canonicalization": "simple/simple"},
			map[string]interface{}{"message": b64(msgs[2]), "headers": []interface{}{"from", "to", "date"}},
			map[string]interface{}{"message": b64(msgs[2]), "algorithm": "sha1"},
			map[string]interface{}{"mesage": b64(msgs[2])},
			"not an object",
		},
	})
	results := out["batch_results"].([]interface{})
	if len(results) != 7 {
		t.Fatalf("%d results for 7 items", len(results))
	}
	item := func(i int) map[string]interface{} { return results[i].(map[string]interface{}) }
	for i, want := range map[int]string{1: "batch_input[1]: invalid message", 4: "invalid algorithm", 5: `unknown field "mesage"`, 6: "must be an object"} {
		if msg, _ := item(i)["error"].(string); !strings.Contains(msg, want) {
			t.Errorf("item %d: error %q, want it to contain %q", i, msg, want)
		}
		if _, signed := item(i)["dkim_signature"]; signed {
			t.Errorf("item %d failed and has a signature", i)
		}
	}
	checks := []struct {
		index    int
		msg, tag string
	}{{0, msgs[0], "h=from:subject;"}, {2, msgs[1], "c=simple/simple;"}, {3, msgs[2], "h=from:to:date;"}}
	for _, c := range checks {
		sig, _ := item(c.index)["dkim_signature"].(string)
		if _, failed := item(c.index)["error"]; failed || sig == "" {
			t.Fatalf("item %d: %v", c.index, item(c.index))
		}
		if !strings.Contains(strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(sig), c.tag) {
			t.Errorf("item %d: signature lacks %s: %q", c.index, c.tag, sig)
		}
		if err := dkimcheck.Verify(records, sig+c.msg); err != nil {
			t.Errorf("item %d does not verify against its own message: %v", c.index, err)
		}
	}
	if item(2)["key_type"] != "ed25519" || item(0)["key_type"] != "rsa-2048" {
		t.Fatalf("algorithms: item 0 %v, item 2 %v", item(0)["key_type"], item(2)["key_type"])
	}
}

func TestDKIMSign_BatchBounds(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	one := map[string]interface{}{"message": b64(testMessage)}
	too := make([]interface{}, dkimBatchMaxItems+1)
	for i := range too {
		too[i] = one
	}
	if msg := env.badRequest(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"batch_input": too}); !strings.Contains(msg, "at most 1000") {
		t.Fatalf("too many items: %q", msg)
	}
	if msg := env.badRequest(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"batch_input": []interface{}{}}); !strings.Contains(msg, "batch_input is empty") {
		t.Fatalf("empty batch: %q", msg)
	}
	both := map[string]interface{}{"message": b64(testMessage), "batch_input": []interface{}{one}}
	if msg := env.badRequest(logical.UpdateOperation, dkimPath+"/sign", both); !strings.Contains(msg, "mutually exclusive") {
		t.Fatalf("message and batch_input: %q", msg)
	}

	// Each message at most the single bound (an item error); together at
	// most dkimBatchBytesFactor times it (413 for the request): four
	// messages of 1016 bytes fit in 4 KiB, one more small one does not.
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_sign_max_message_bytes": minDKIMSignBytes})
	big := testMessage + strings.Repeat("x", minDKIMSignBytes-len(testMessage)-10) + "\r\n"
	items := []interface{}{}
	for range dkimBatchBytesFactor {
		items = append(items, map[string]interface{}{"message": b64(big)})
	}
	huge := map[string]interface{}{"message": b64(big + strings.Repeat("y", 100))}
	out := env.ok(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"batch_input": append(items, huge)})
	results := out["batch_results"].([]interface{})
	if msg, _ := results[dkimBatchBytesFactor].(map[string]interface{})["error"].(string); !strings.Contains(msg, "dkim_sign_max_message_bytes") {
		t.Fatalf("oversize item: %q", msg)
	}
	resp, err := env.do(logical.UpdateOperation, dkimPath+"/sign", map[string]interface{}{"batch_input": append(items, one)})
	if code := statusOf(logical.UpdateOperation, resp, err); code != 413 {
		t.Fatalf("batch over the byte bound: status %d (%v %v), want 413", code, resp, err)
	}
}
