package dkimkey

// RecordName is where a selector's key is published.
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + domain
}

// TXTValue is the key record: v=DKIM1; k=rsa|ed25519; p=<public key>.
func TXTValue(keyType, publicB64 string) string {
	k := "rsa"
	if keyType == "ed25519" {
		k = "ed25519"
	}
	return "v=DKIM1; k=" + k + "; p=" + publicB64
}

// RevokedTXTValue is the record of a revoked key: an empty p= tells
// verifiers that the key was revoked (RFC 6376 3.6.1), so mail signed with
// it fails instead of verifying.
const RevokedTXTValue = "v=DKIM1; p="

// maxTXTString is the longest character-string a TXT record can hold
// (RFC 1035 3.3); longer values are published as several strings that
// verifiers concatenate (RFC 6376 3.6.2.2).
const maxTXTString = 255

// SplitTXT cuts a TXT value into character-strings of at most 255 bytes.
func SplitTXT(value string) []string {
	parts := make([]string, 0, len(value)/maxTXTString+1)
	for len(value) > maxTXTString {
		parts = append(parts, value[:maxTXTString])
		value = value[maxTXTString:]
	}
	return append(parts, value)
}
