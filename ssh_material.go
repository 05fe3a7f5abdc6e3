package penguinmails

import (
	"crypto"
	"fmt"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/sshkey"
)

// sshMaterial is one version of an SSH key. The private key is kept in
// OpenSSH format, unencrypted: storage is seal-wrapped, and a download
// encrypts it with the passphrase asked for then.
type sshMaterial struct {
	PrivateKey  string `json:"private_key,omitempty"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	KeyType     string `json:"key_type"`
	KeyBits     int    `json:"key_bits"`
	Comment     string `json:"comment"`
	Imported    bool   `json:"imported"`
	// Downloads counts downloads of this version's private key; it is what
	// one_time_download limits.
	Downloads int `json:"downloads,omitempty"`
	// OneTimeLocked is set by a download made while one_time_download was
	// on; switching the flag off does not unlock the version.
	OneTimeLocked bool `json:"one_time_locked,omitempty"`
}

// newSSHMaterial encodes key as one version's material.
func newSSHMaterial(key crypto.Signer, comment string, imported bool) (sshMaterial, error) {
	enc, err := sshkey.Encode(key, comment)
	if err != nil {
		return sshMaterial{}, err
	}
	return sshMaterial{
		PrivateKey:  enc.PrivateKey,
		PublicKey:   enc.PublicKey,
		Fingerprint: enc.Fingerprint,
		KeyType:     enc.KeyType,
		KeyBits:     enc.KeyBits,
		Comment:     comment,
		Imported:    imported,
	}, nil
}

// exportPrivateKey returns the version's private key, encrypted with
// passphrase when one is given.
func (m sshMaterial) exportPrivateKey(passphrase string) (string, error) {
	return sshkey.Export(m.PrivateKey, m.Comment, passphrase)
}

// sshKeyComment labels a key in authorized_keys so that an agent or a person
// can tell which secret and version a line belongs to.
func sshKeyComment(e *secretEntry, version int) string {
	return fmt.Sprintf("penguinmails:%s/%s/%s:v%d", e.Kind, e.Tenant, e.Name, version)
}
