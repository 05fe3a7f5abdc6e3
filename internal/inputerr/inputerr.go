// Package inputerr is the error of a request the caller must fix. The engine
// answers it with a 400 and its message, which names the field and the rule.
// It lives apart from the engine so that the key-format and driver packages
// under internal/ can refuse input without importing the Vault sdk.
//
// Messages never carry secret values: a value may be quoted only when it is
// not secret (a domain, a selector, a key type), and then through Quote.
package inputerr

import (
	"errors"
	"fmt"
)

// Error is a refusal of the caller's input.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

// New formats a refusal. Quote user-supplied, non-secret values with Quote.
func New(format string, args ...interface{}) error {
	return &Error{msg: fmt.Sprintf(format, args...)}
}

// As reports whether err is, or wraps, an input error, and returns it.
func As(err error) (*Error, bool) {
	var ie *Error
	ok := errors.As(err, &ie)
	return ie, ok
}

// quoteMax bounds a quoted value, so that a huge input cannot make a huge
// response or log line.
const quoteMax = 64

// Quote quotes a user-supplied, non-secret value for a message, cut short.
func Quote(s string) string {
	if len(s) > quoteMax {
		return fmt.Sprintf("%q...", s[:quoteMax])
	}
	return fmt.Sprintf("%q", s)
}
