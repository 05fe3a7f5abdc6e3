package penguinmails

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// The rotation steps of API keys (see the engine's steps in engine.go):
//
//	create  the pending key's description: the current key's attributes and
//	        a name tagged with the pending version (Postmark: the token the
//	        caller supplied)
//	set     the provider creates the key; its id and secret are recorded
//	test    one authenticated call with the new key
//	undo    the pending key is deleted at the provider, found by its unique
//	        name (or IAM user and time) when its id was lost in a crash
//	remove  a previous key is deleted at the provider (removal.go)

func createAPIKey(_ context.Context, _ *backend, e *secretEntry, _ *engineConfig, _ time.Time, supplied map[string]interface{}) (interface{}, error) {
	svc := keyServiceNamed(e.Name)
	var cur apiKeyMaterial
	if err := decodeMaterial(e.current(), &cur); err != nil {
		return nil, err
	}
	token, given := supplied["server_token"].(string)
	token = strings.TrimSpace(token)
	if svc.manual {
		if token == "" {
			return nil, badInput("server_token is required to rotate a %s key: %s has no API that makes keys; "+
				"make a new server token in its console and give it here", svc.name, svc.name)
		}
		if len(token) > maxKeyLen || strings.ContainsAny(token, " \t\r\n") {
			return nil, badInput("server_token must be 1 to %d characters without spaces", maxKeyLen)
		}
		next := cur
		next.Key = provider.Key{Secret: token}
		return next, nil
	}
	if given {
		return nil, badInput("server_token does not apply to %s keys: the provider makes the new key", svc.name)
	}
	like := cur.Key
	like.ID, like.Secret = "", ""
	like.Name = taggedKeyName(cur.Key.Name, e.nextVersionNumber())
	return apiKeyMaterial{Key: like}, nil
}

// versionTag is the " (v3)" a new key's name ends with: it makes the name
// unique, so that a key whose id was lost in a crash can still be found.
var versionTag = regexp.MustCompile(` \(v[0-9]+\)$`)

func taggedKeyName(name string, version int) string {
	base := versionTag.ReplaceAllString(name, "")
	if base == "" {
		base = "penguinmails"
	}
	tag := fmt.Sprintf(" (v%d)", version)
	if len(base)+len(tag) > maxKeyNameLen {
		base = base[:maxKeyNameLen-len(tag)]
	}
	return base + tag
}

func setAPIKey(ctx context.Context, b *backend, e *secretEntry, p *secretVersion) error {
	svc := keyServiceNamed(e.Name)
	if svc.manual {
		return nil // the caller made the token in the provider's console
	}
	m, drv, err := b.keyAndDriver(ctx, e, p)
	if err != nil {
		return err
	}
	made, err := drv.Create(ctx, m.Key)
	if err != nil {
		return keyLimitHint(svc, err)
	}
	m.Key.ID, m.Key.Secret = made.ID, made.Secret
	if len(made.Scopes) > 0 {
		m.Key.Scopes = made.Scopes
	}
	p.Material, err = json.Marshal(m)
	return err
}

// keyLimitHint adds what to do to a provider's key limit error: Vault never
// deletes a key it does not hold to make room.
func keyLimitHint(svc *keyService, err error) error {
	if errors.Is(err, provider.ErrKeyLimit) {
		return fmt.Errorf("%w; delete an unused %s key by hand (Vault deletes only keys it holds) and rotate again", err, svc.name)
	}
	return err
}

func testAPIKey(ctx context.Context, b *backend, e *secretEntry, p *secretVersion) error {
	m, drv, err := b.keyAndDriver(ctx, e, p)
	if err != nil {
		return err
	}
	return drv.Test(ctx, m.Key)
}

// keyAndDriver decodes version v's key and builds the driver of e's
// provider.
func (b *backend) keyAndDriver(ctx context.Context, e *secretEntry, v *secretVersion) (apiKeyMaterial, provider.Driver, error) {
	var m apiKeyMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return m, nil, err
	}
	drv, err := b.keyDriver(ctx, e)
	return m, drv, err
}

// undoAPIKey deletes a pending key that will never be current. Its id is
// known when set recorded it; otherwise set may have run half way (the
// provider made the key, the plugin stopped before storing it), and the key
// is looked for by what create recorded.
func undoAPIKey(ctx context.Context, b *backend, e *secretEntry, p *secretVersion) error {
	if keyServiceNamed(e.Name).manual {
		return nil
	}
	m, drv, err := b.keyAndDriver(ctx, e, p)
	if err != nil {
		return err
	}
	if m.Key.ID == "" {
		finder, ok := drv.(provider.Finder)
		if !ok {
			return nil
		}
		// The provider stamps creation with its own clock: the margin keeps
		// a Vault clock that runs ahead from missing the key. The name tag
		// (or IAM's two keys per user) keeps the match unique.
		id, found, err := finder.Find(ctx, m.Key, p.CreatedTime.Add(-findClockMargin), heldKeyIDs(e))
		if err != nil || !found {
			return err
		}
		m.Key.ID = id
	}
	return drv.Delete(ctx, m.Key)
}

// findClockMargin is how far the provider's clock may lag Vault's.
const findClockMargin = 5 * time.Minute

// heldKeyIDs are the ids of every key the secret holds: never candidates
// for an orphan.
func heldKeyIDs(e *secretEntry) []string {
	var ids []string
	for i := range e.Versions {
		var m apiKeyMaterial
		if decodeMaterial(&e.Versions[i], &m) == nil && m.Key.ID != "" {
			ids = append(ids, m.Key.ID)
		}
	}
	return ids
}

func removeAPIKey(ctx context.Context, b *backend, e *secretEntry, v *secretVersion) error {
	var m apiKeyMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return err
	}
	if keyInService(b, e, v.Version, m.Key.ID) {
		// A write that corrected the key's secret kept its id: the key
		// this version names is the one a later version serves.
		return nil
	}
	drv, err := b.keyDriver(ctx, e)
	if err != nil {
		return err
	}
	return drv.Delete(ctx, m.Key)
}

// keyInService reports whether a version of e other than version, still
// pending, current or in its overlap, holds the provider key with id.
func keyInService(b *backend, e *secretEntry, version int, id string) bool {
	k := b.kinds[e.Kind]
	if k == nil || id == "" {
		return false
	}
	for i := range e.Versions {
		o := &e.Versions[i]
		if o.Version == version {
			continue
		}
		switch k.stageOf(o) {
		case stagePending, stageCurrent, stagePrevious:
			var m apiKeyMaterial
			if decodeMaterial(o, &m) == nil && m.Key.ID == id {
				return true
			}
		}
	}
	return false
}

// keyDriver builds the driver of e's provider, authenticated with the
// account credential the secret names or else with its current key.
func (b *backend) keyDriver(ctx context.Context, e *secretEntry) (provider.Driver, error) {
	svc := keyServiceNamed(e.Name)
	var s apiKeySettings
	if err := json.Unmarshal(e.Settings, &s); err != nil {
		return nil, fmt.Errorf("decoding api key settings: %w", err)
	}
	ep := provider.Endpoint{BaseURL: s.BaseURL, Region: s.Region}
	if s.Account != "" {
		c, err := loadProviderCredential(ctx, b.storage, s.Account)
		if err != nil {
			return nil, err
		}
		if c == nil || c.Provider != svc.name {
			return nil, fmt.Errorf("account %q is not a %s credential in config/providers", s.Account, svc.name)
		}
		ep.Auth = provider.Key{ID: c.ID, Secret: c.Secret}
		ep.BaseURL = c.BaseURL // the credential goes to its own API root only
	} else {
		var cur apiKeyMaterial
		if err := decodeMaterial(e.current(), &cur); err != nil {
			return nil, err
		}
		if cur.Key.Secret == "" {
			return nil, fmt.Errorf("the current %s key was revoked and no account is set: write a new key or set account", svc.name)
		}
		ep.Auth = cur.Key
	}
	return svc.newDriver(ep)
}
