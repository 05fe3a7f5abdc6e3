package provider

import (
	"strings"
	"unicode"
)

// maxMessage bounds a provider's message kept in an Error.
const maxMessage = 200

// SafeMessage returns a provider's error message fit for an Error's Code:
// "" when it contains one of the secrets or a word shaped like a key or
// token (a provider may echo what it was sent), else the message without
// control characters, cut to 200 characters.
func SafeMessage(msg string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			return ""
		}
	}
	for _, w := range strings.FieldsFunc(msg, func(r rune) bool { return !tokenRune(r) }) {
		if looksLikeToken(w) {
			return ""
		}
	}
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(msg))
	if r := []rune(msg); len(r) > maxMessage {
		msg = string(r[:maxMessage])
	}
	return msg
}

func tokenRune(r rune) bool {
	return r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-+/=", r))
}

// looksLikeToken reports a word of 20 or more characters mixing letters and
// digits: API keys, access keys and tokens are; words of prose are not.
func looksLikeToken(w string) bool {
	if len(w) < 20 {
		return false
	}
	return strings.IndexFunc(w, unicode.IsLetter) >= 0 && strings.IndexFunc(w, unicode.IsDigit) >= 0
}
