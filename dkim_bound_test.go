package penguinmails

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
)

// TestDKIM_LargestEntryFitsTheBound is the DKIM counterpart of
// TestSaveSecret_LargestEntryFitsTheBound. DKIM is the type whose replaced
// versions keep their private keys (for the whole dkim_grace_period, so mail
// in flight still verifies), so its worst case is max_versions rsa-4096 keys
// all retiring at once, the full remembered-selector list with the longest
// selectors, the longest domain and tenant, and a full history. It must stay
// under maxEntryBytes, so the size guard can never block a DKIM revoke.
func TestDKIM_LargestEntryFitsTheBound(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	rsa4096, err := dkimkey.ParseKeyType("rsa-4096")
	if err != nil {
		t.Fatal(err)
	}
	// One generated key serves every version: the entry's size, not the
	// keys' distinctness, is under test, and 100 RSA-4096 keys take minutes.
	pair, err := dkimkey.Generate(rand.Reader, rsa4096)
	if err != nil {
		t.Fatal(err)
	}
	long := func(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }
	selector := func(i int) string { return long(fmt.Sprintf("s%d-", i), dkimkey.MaxLabel) }
	// The record name {selector}._domainkey.{domain} is at most 253 characters.
	domain := long("d", dkimkey.MaxName-dkimkey.MaxLabel-len("._domainkey.")-4) + ".com"

	settings := dkimSettings{KeyType: "rsa-4096", Exportable: true, SelectorPrefix: long("p", 40)}
	for i := 0; i < maxRememberedSelectors; i++ {
		settings.Selectors = append(settings.Selectors, selectorUse{Selector: selector(10000 + i), Ended: env.clock.Now()})
	}
	rawSettings, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	kind := dkimKind()
	kind.onNewVersion = nil // keep the hand-built selector list at its bound
	cfg := defaultConfig()
	cfg.MaxVersions = maxVersionsLimit
	cfg.HistoryLimit = maxLogLimit
	pol := dkimKind().defaults
	pol.GracePeriod = maxGracePeriod
	cfg.Policies = map[string]typePolicy{"dkim": pol}
	now := env.clock.Now()
	by := actor{DisplayName: long("a", 256), EntityID: long("e", 36)}
	e := &secretEntry{Kind: "dkim", Tenant: long("t", 128), Name: domain, CreatedTime: now, Settings: rawSettings}
	for i := 0; i < maxVersionsLimit+5; i++ {
		m := dkimMaterial{Selector: selector(i), KeyType: "rsa-4096", PublicKey: pair.PublicB64, PrivateKey: pair.PrivatePEM}
		r := rotation{Trigger: triggerEvent, Reason: long("r", maxReasonLen), IncidentID: long("i", maxIncidentIDLen), Actor: by}
		if err := e.rotateTo(m, kind, cfg, r, now); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.Versions) != maxVersionsLimit || len(e.History) != maxLogLimit {
		t.Fatalf("built %d versions and %d history rows, want %d and %d", len(e.Versions), len(e.History), maxVersionsLimit, maxLogLimit)
	}
	for _, v := range e.Versions[:len(e.Versions)-1] {
		var m dkimMaterial
		if err := decodeMaterial(&v, &m); err != nil || v.Status != dkimStatusRetiring || m.PrivateKey == "" {
			t.Fatalf("version %d is %s (private key kept: %v): the worst case keeps every key retiring", v.Version, v.Status, m.PrivateKey != "")
		}
	}
	if err := saveSecret(context.Background(), env.storage, e); err != nil {
		t.Fatalf("the largest allowed DKIM entry is refused: %v", err)
	}
	raw, _ := env.storage.Get(context.Background(), e.storageKey())
	t.Logf("largest DKIM entry: %d bytes, bound %d bytes (%.0f%%)", len(raw.Value), maxEntryBytes, 100*float64(len(raw.Value))/maxEntryBytes)
	if _, err := e.revokeLive(kind, rotation{Trigger: triggerEvent, Reason: long("r", maxReasonLen), Actor: by}, now, cfg); err != nil {
		t.Fatal(err)
	}
	if err := saveSecret(context.Background(), env.storage, e); err != nil {
		t.Fatalf("revoking the largest DKIM entry is refused: %v", err)
	}
}
