package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/sshkey"
)

// statusGrace is a replaced SSH key that stays in authorized_keys until its
// grace period (config ssh_grace_period, 24 h) ends.
const statusGrace = "grace"

// maxPassphraseLen bounds passphrases; bcrypt_pbkdf accepts any length, but a
// huge one is a mistake, not a passphrase.
const maxPassphraseLen = 1024

// sshSettings apply to the secret as a whole, not to one key version.
type sshSettings struct {
	OneTimeDownload  bool      `json:"one_time_download"`
	DownloadCount    int       `json:"download_count"`
	LastDownloaded   time.Time `json:"last_downloaded,omitempty"`
	LastDownloadedBy actor     `json:"last_downloaded_by"`
}

func sshKind() *secretKind {
	return &secretKind{
		Name:        "ssh",
		Title:       "SSH key",
		defaults:    typePolicy{RotationPeriod: 90 * day, AlertThreshold: 14 * day, GracePeriod: 24 * time.Hour, RiskLevel: "high"},
		paths:       pathSSH,
		create:      generateSSHVersion,
		graceStatus: statusGrace,
		afterGrace:  statusExpired,
		revocable:   true,
		// Only the current version's private key is ever served, so a
		// replaced key loses its private half as soon as it is replaced,
		// and a revoked or expired one at the latest then (entries stored
		// before this rule): it leaves storage and every later snapshot.
		onNewVersion: destroyReplacedSSHPrivateKeys,
		onRevoke:     destroySSHPrivateKey,
		onGraceEnd:   destroySSHPrivateKey,
	}
}

// destroyReplacedSSHPrivateKeys runs when v became current: every other
// version keeps its public key (authorized_keys during the grace period)
// but not its private key. This also keeps an entry of 100 RSA-8192
// versions far below maxEntryBytes.
func destroyReplacedSSHPrivateKeys(e *secretEntry, v *secretVersion) error {
	for i := range e.Versions {
		if old := &e.Versions[i]; old.Version != v.Version {
			if err := destroySSHPrivateKey(old); err != nil {
				return err
			}
		}
	}
	return nil
}

// destroySSHPrivateKey removes the private key from a version's material,
// keeping the public key and fingerprint for the history and reads.
func destroySSHPrivateKey(v *secretVersion) error {
	m, err := sshMaterialOf(v)
	if err != nil || m.PrivateKey == "" {
		return err
	}
	m.PrivateKey = ""
	v.Material, err = json.Marshal(m)
	return err
}

func pathSSH(b *backend, k *secretKind) []*framework.Path {
	fields := map[string]*framework.FieldSchema{
		"key_type": {Type: framework.TypeString,
			Description: "Key to create: " + strings.Join(sshkey.Types(), ", ") + " (default " + sshkey.DefaultType +
				"). On an existing key, a different key_type generates a new version of that type now."},
		"private_key": {Type: framework.TypeString,
			Description:  "Import this private key (OpenSSH, or PEM: PKCS#1, PKCS#8, SEC 1) instead of generating one. On an existing key it becomes the next version.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Private key", Sensitive: true}},
		"passphrase": {Type: framework.TypeString,
			Description:  "Passphrase of an encrypted private_key.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Passphrase", Sensitive: true}},
		"public_key": {Type: framework.TypeString,
			Description: "Optional authorized_keys line of the imported key; the import is refused when it does not match private_key."},
		"one_time_download": {Type: framework.TypeBool,
			Description: "Allow one download of each key version's private key; after that only a rotation yields a downloadable key. " +
				"A version downloaded while this is on stays locked when it is switched off."},
	}
	return []*framework.Path{
		secretPath(b, k, fields, writeSSH, viewSSH, "Generate, import, read and delete an SSH key pair.", sshHelp),
		pathSSHPrivate(b, k),
		pathSSHAuthorizedKeys(b, k),
	}
}

// writeSSH validates the whole request, then applies it: settings in place,
// and a new version when a key is generated or imported.
func writeSSH(ctx context.Context, b *backend, req *logical.Request, d *framework.FieldData, e *secretEntry, cfg *engineConfig, now time.Time) error {
	creating := e.current() == nil
	settings, err := sshSettingsOf(e)
	if err != nil {
		return err
	}
	if v, ok := d.GetOk("one_time_download"); ok {
		settings.OneTimeDownload = v.(bool)
	}
	material, err := b.sshKeyFromRequest(d, e)
	if err != nil {
		return err
	}
	if material == nil && creating {
		return fmt.Errorf("ssh write produced no key")
	}

	raw, err := json.Marshal(settings)
	if err != nil {
		return err
	}
	e.Settings = raw
	if material == nil {
		return nil // settings only: no new version
	}
	return e.writeVersion(material, req, now, e.kindOf(b), cfg, true, "key replaced by write")
}

// sshKeyFromRequest returns the next version's material when the request
// imports or generates a key, and nil when it changes settings only.
func (b *backend) sshKeyFromRequest(d *framework.FieldData, e *secretEntry) (*sshMaterial, error) {
	comment := sshKeyComment(e, e.CurrentVersion+1)
	if pk, ok := d.GetOk("private_key"); ok {
		m, err := importSSHKey(pk.(string), d, comment)
		if err != nil || isCurrentKey(e, m) {
			return nil, err // importing the current key again changes nothing
		}
		return &m, nil
	}
	for _, f := range []string{"passphrase", "public_key"} {
		if _, ok := d.GetOk(f); ok {
			return nil, badInput("%s is only used together with private_key", f)
		}
	}
	keyType, asked := sshkey.DefaultType, false
	if v, ok := d.GetOk("key_type"); ok {
		keyType, asked = strings.ToLower(strings.TrimSpace(v.(string))), true
		if err := sshkey.ValidateType(keyType); err != nil {
			return nil, err
		}
	}
	// An existing key is only replaced when a different key_type is asked
	// for; a write of settings, or of the type it has, keeps it.
	if cur := e.current(); cur != nil {
		m, err := sshMaterialOf(cur)
		if err != nil || !asked || keyType == m.KeyType {
			return nil, err
		}
	}
	key, err := sshkey.Generate(keyType, b.GetRandomReader())
	if err != nil {
		return nil, fmt.Errorf("generating a %s key: %w", keyType, err)
	}
	m, err := newSSHMaterial(key, comment, false)
	return &m, err
}

// isCurrentKey reports whether m is the key of e's current version.
func isCurrentKey(e *secretEntry, m sshMaterial) bool {
	cur := e.current()
	if cur == nil {
		return false
	}
	c, err := sshMaterialOf(cur)
	return err == nil && c.Fingerprint == m.Fingerprint
}

// importSSHKey parses and checks an imported key with its optional
// passphrase, public_key and key_type.
func importSSHKey(pemText string, d *framework.FieldData, comment string) (sshMaterial, error) {
	passphrase := d.Get("passphrase").(string)
	if len(passphrase) > maxPassphraseLen {
		return sshMaterial{}, badInput("passphrase is too long: at most %d characters", maxPassphraseLen)
	}
	key, err := sshkey.ParsePrivate(pemText, passphrase)
	if err != nil {
		return sshMaterial{}, err
	}
	if pub, ok := d.GetOk("public_key"); ok {
		if err := sshkey.CheckPublicMatches(pub.(string), key); err != nil {
			return sshMaterial{}, err
		}
	}
	m, err := newSSHMaterial(key, comment, true)
	if err != nil {
		return sshMaterial{}, err
	}
	if v, ok := d.GetOk("key_type"); ok && strings.ToLower(strings.TrimSpace(v.(string))) != m.KeyType {
		return sshMaterial{}, badInput("key_type %s does not match private_key, which is %s", quoteShort(v.(string)), m.KeyType)
	}
	return m, nil
}

// generateSSHVersion makes a rotated version: a new key of the current type.
func generateSSHVersion(_ context.Context, b *backend, e *secretEntry, _ *engineConfig, _ time.Time, _ map[string]interface{}) (interface{}, error) {
	cur, err := sshMaterialOf(e.current())
	if err != nil {
		return nil, err
	}
	key, err := sshkey.Generate(cur.KeyType, b.GetRandomReader())
	if err != nil {
		return nil, err
	}
	return newSSHMaterial(key, sshKeyComment(e, e.CurrentVersion+1), false)
}

func sshMaterialOf(v *secretVersion) (sshMaterial, error) {
	var m sshMaterial
	err := decodeMaterial(v, &m)
	return m, err
}

func sshSettingsOf(e *secretEntry) (sshSettings, error) {
	var s sshSettings
	if len(e.Settings) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(e.Settings, &s); err != nil {
		return s, fmt.Errorf("decoding ssh settings: %w", err)
	}
	return s, nil
}

// viewSSH renders a version. It never includes the private key, whatever
// withSecrets says: the private key is only served by the counted download.
func viewSSH(e *secretEntry, v *secretVersion, _ bool) (map[string]interface{}, error) {
	m, err := sshMaterialOf(v)
	if err != nil {
		return nil, err
	}
	s, err := sshSettingsOf(e)
	if err != nil {
		return nil, err
	}
	cur, err := sshMaterialOf(e.current())
	if err != nil {
		return nil, err
	}
	return map[string]interface{}{
		"public_key":               m.PublicKey,
		"fingerprint":              m.Fingerprint,
		"key_type":                 m.KeyType,
		"key_bits":                 m.KeyBits,
		"imported":                 m.Imported,
		"version_download_count":   m.Downloads,
		"one_time_download":        s.OneTimeDownload,
		"download_count":           s.DownloadCount,
		"last_downloaded":          formatTime(s.LastDownloaded),
		"last_downloaded_by":       s.lastDownloadedBy(),
		"private_key_downloadable": downloadRefusal(e, e.current(), cur, s) == "",
	}, nil
}

// lastDownloadedBy is the actor of the last download, or nil before any.
func (s sshSettings) lastDownloadedBy() map[string]interface{} {
	if s.LastDownloaded.IsZero() {
		return nil
	}
	return s.LastDownloadedBy.view()
}

// downloadRefusal says why the current version's private key may not be
// downloaded now, or "" when it may.
func downloadRefusal(e *secretEntry, cur *secretVersion, m sshMaterial, s sshSettings) string {
	path := e.Kind + "/" + e.Tenant + "/" + e.Name
	switch {
	case cur.Status != statusActive:
		return fmt.Sprintf("%s is %s: no key of it is valid; rotate it to get a new key", path, cur.Status)
	case m.OneTimeLocked || (s.OneTimeDownload && m.Downloads > 0):
		return fmt.Sprintf("the private key of %s version %d was already downloaded under one_time_download; rotate it to get a downloadable key", path, cur.Version)
	}
	return ""
}

// pathSSHPrivate is the one way to export a private key: update (POST or
// PUT) on .../private, so that exporting is one capability of its own. A
// download writes storage (the count and the history), which is another
// reason it is no read. The passphrase travels only in the body.
func pathSSHPrivate(b *backend, k *secretKind) *framework.Path {
	p := secretSubPath(k, "private", map[string]*framework.FieldSchema{
		"passphrase": {Type: framework.TypeString,
			Description:  fmt.Sprintf("Encrypt the returned private key with this passphrase (OpenSSH format, bcrypt KDF; at most %d characters). Empty: unencrypted. Request body only.", maxPassphraseLen),
			DisplayAttrs: &framework.DisplayAttributes{Name: "Passphrase", Sensitive: true}},
	})
	p.DisplayAttrs.OperationSuffix = k.Name + "_private_key"
	p.Operations = map[logical.Operation]framework.OperationHandler{
		logical.UpdateOperation: &framework.PathOperation{
			Callback:                    b.handle(b.downloadSSHKey(k)),
			Summary:                     "Download the current private key (counted and recorded). Needs update on this path.",
			ForwardPerformanceStandby:   true,
			ForwardPerformanceSecondary: true,
		},
	}
	p.HelpSynopsis = "Download the current SSH private key; every download is counted and recorded."
	p.HelpDescription = strings.TrimSpace(sshPrivateHelp)
	return p
}

// downloadSSHKey serves the current version's private key. The download is
// counted and recorded in the same Put that precedes the response, so no key
// leaves Vault uncounted.
func (b *backend) downloadSSHKey(k *secretKind) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		ref, err := refFrom(k, d)
		if err != nil {
			return nil, err
		}
		passphrase := d.Get("passphrase").(string)
		if len(passphrase) > maxPassphraseLen {
			return nil, badInput("passphrase is too long: at most %d characters", maxPassphraseLen)
		}
		var out map[string]interface{}
		e, err := b.modify(ctx, req.Storage, ref, func(e *secretEntry, cfg *engineConfig, now time.Time) error {
			var err error
			out, err = recordDownload(e, passphrase, actorOf(req), now, cfg)
			return err
		})
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, notFound("no %s at %s", k.Title, ref.path())
		}
		b.emit(ctx, "download", e, "version", fmt.Sprint(e.CurrentVersion))
		return &logical.Response{Data: out}, nil
	}
}

// recordDownload checks that the current key may be downloaded, exports it
// and counts the download in the entry's settings, material and history.
func recordDownload(e *secretEntry, passphrase string, by actor, now time.Time, cfg *engineConfig) (map[string]interface{}, error) {
	cur := e.current()
	m, err := sshMaterialOf(cur)
	if err != nil {
		return nil, err
	}
	s, err := sshSettingsOf(e)
	if err != nil {
		return nil, err
	}
	if why := downloadRefusal(e, cur, m, s); why != "" {
		return nil, logical.CodedError(409, why)
	}
	privateKey, err := m.exportPrivateKey(passphrase)
	if err != nil {
		return nil, err
	}
	m.Downloads++
	// Downloaded under one_time_download: this version stays locked even if
	// the flag is switched off later; only a new version is downloadable.
	m.OneTimeLocked = m.OneTimeLocked || s.OneTimeDownload
	s.DownloadCount++
	s.LastDownloaded, s.LastDownloadedBy = now, by
	if cur.Material, err = json.Marshal(m); err != nil {
		return nil, err
	}
	if e.Settings, err = json.Marshal(s); err != nil {
		return nil, err
	}
	e.recordAccess(historyEntry{Time: now, Operation: "download", Trigger: triggerManual, Actor: by,
		Result: "success", FromVersion: cur.Version, ToVersion: cur.Version}, cfg.AccessLimit)
	return map[string]interface{}{
		"private_key":            privateKey,
		"encrypted":              passphrase != "",
		"version":                cur.Version,
		"key_type":               m.KeyType,
		"fingerprint":            m.Fingerprint,
		"public_key":             m.PublicKey,
		"download_count":         s.DownloadCount,
		"version_download_count": m.Downloads,
		"one_time_download":      s.OneTimeDownload,
	}, nil
}

func pathSSHAuthorizedKeys(b *backend, k *secretKind) *framework.Path {
	p := secretSubPath(k, "authorized_keys", nil)
	p.Operations = map[logical.Operation]framework.OperationHandler{
		logical.ReadOperation: &framework.PathOperation{
			Callback: b.handle(b.readAuthorizedKeys(k)),
			Summary:  "The public keys valid now, as authorized_keys text and as a list.",
		},
	}
	p.HelpSynopsis = "The public keys of an SSH key that are valid now, for syncing authorized_keys."
	p.HelpDescription = strings.TrimSpace(sshAuthorizedKeysHelp)
	return p
}

// readAuthorizedKeys answers from the clock, not from what the scheduler
// has persisted: onEntry ends grace periods that are over.
func (b *backend) readAuthorizedKeys(k *secretKind) framework.OperationFunc {
	return b.onEntry(k, func(e *secretEntry, _ secretRef, _ *framework.FieldData) (*logical.Response, error) {
		return authorizedKeysResponse(e)
	})
}

// authorizedKeysResponse lists the active key and any key still in its grace
// period, newest first. A revoked secret has none.
func authorizedKeysResponse(e *secretEntry) (*logical.Response, error) {
	lines := []string{}
	keys := []interface{}{}
	for i := len(e.Versions) - 1; i >= 0; i-- {
		v := &e.Versions[i]
		if v.Status != statusActive && v.Status != statusGrace {
			continue
		}
		m, err := sshMaterialOf(v)
		if err != nil {
			return nil, err
		}
		lines = append(lines, m.PublicKey)
		keys = append(keys, map[string]interface{}{
			"version": v.Version, "status": v.Status, "public_key": m.PublicKey,
			"fingerprint": m.Fingerprint, "valid_until": formatTime(v.GraceUntil),
		})
	}
	text := strings.Join(lines, "\n")
	if text != "" {
		text += "\n"
	}
	return &logical.Response{Data: map[string]interface{}{
		"authorized_keys": text, "keys": keys, "status": e.current().Status,
	}}, nil
}

const sshHelp = `
An SSH key pair, generated inside Vault or imported. Each generation,
import or rotation is a new version; the replaced key stays valid (status
grace, listed by authorized_keys) for config ssh_grace_period (24 h), then
expires.

  vault write penguinmails/ssh/tenant-1/admin key_type=ed25519
  vault write penguinmails/ssh/tenant-1/admin private_key=@id_ed25519 \
      passphrase=... public_key=@id_ed25519.pub
  vault read penguinmails/ssh/tenant-1/admin
  vault write -field=private_key penguinmails/ssh/tenant-1/admin/private
  vault read -field=authorized_keys penguinmails/ssh/tenant-1/admin/authorized_keys
  vault write penguinmails/ssh/tenant-1/admin/rotate reason="quarterly"
  vault write penguinmails/ssh/tenant-1/admin/revoke reason="laptop lost" incident_id=INC-1

key_type: ed25519 (default), rsa-4096, rsa-3072, ecdsa-p256, ecdsa-p384,
ecdsa-p521. RSA below 3072 bits is refused, generated or imported.

A read returns the public key (authorized_keys line), its SHA256
fingerprint, key_type, key_bits, the versions with their status (active,
grace, expired, revoked), the rotation metadata, download_count and
last_downloaded. It never returns the private key: that is only served by
the counted download at .../private.

Set one_time_download=true to allow one download per key version. A
version downloaded while it is on stays locked even after it is switched
off; only a new version (rotate) is downloadable again.
`

const sshPrivateHelp = `
Returns the current version's private key in OpenSSH format, encrypted with
passphrase when one is given. Each download increments download_count, sets
last_downloaded and adds a "download" entry (time, display_name, entity_id)
to the history, before the key is returned.

A revoked key cannot be downloaded. With one_time_download set, each key
version can be downloaded once; after that only a rotation yields a
downloadable key, even if one_time_download is switched off. Both refusals
answer 409.

Exporting is one capability: "update" on this path (vault write, POST or
PUT). A read is not an operation of it. The passphrase is taken from the
request body only:

  vault write -field=private_key penguinmails/ssh/tenant-1/admin/private passphrase=...
`

const sshAuthorizedKeysHelp = `
Returns the public keys that are valid now: the active key and a replaced key
still inside its grace period. authorized_keys is the text of an
authorized_keys file (one line per key, newest first); keys lists the same
keys with version, status, fingerprint and valid_until (the end of the grace
period, empty for the active key). After a revoke both are empty until the
next rotation. An agent on the server can poll this path and replace its
authorized_keys file with the text.
`
