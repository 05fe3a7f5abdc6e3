package penguinmails

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// badInput is a request the user must fix: Vault answers it with a 400 and
// the message, which names the field and the rule. Messages never carry
// secret values.
func badInput(format string, args ...interface{}) error {
	return inputerr.New(format, args...)
}

// notFound answers 404 with a message, for operations on a missing secret
// that are not reads (reads answer a bare 404 like every Vault engine).
func notFound(format string, args ...interface{}) error {
	return logical.CodedError(404, fmt.Sprintf(format, args...))
}

// handle wraps every operation: input errors become 400 responses, and a
// panic becomes an error instead of killing the plugin process that serves
// every mount. The panic value is not logged: it could hold request data.
func (b *backend) handle(fn framework.OperationFunc) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (resp *logical.Response, err error) {
		defer b.recoverRequest(req, &err)
		resp, err = fn(ctx, req, d)
		if ie, ok := inputerr.As(err); ok {
			return logical.ErrorResponse(ie.Error()), nil
		}
		return resp, err
	}
}

// identifierRe is the rule for tenant ids and secret names.
var identifierRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

const identifierRule = `must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ and must not contain ".."`

func validateIdentifier(field, value string) error {
	if !identifierRe.MatchString(value) || strings.Contains(value, "..") {
		return badInput("invalid %s %s: %s", field, quoteShort(value), identifierRule)
	}
	return nil
}

// quoteShort quotes a user-supplied, non-secret value for an error message,
// cut short so that a huge input cannot make a huge response.
func quoteShort(s string) string { return inputerr.Quote(s) }

// hostnameRe accepts a DNS name made of letters, digits and hyphens.
var hostnameLabelRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// validateHost accepts an IP address or a DNS host name (RFC 1123).
func validateHost(field, value string) error {
	if value == "" {
		return badInput("%s is required", field)
	}
	if net.ParseIP(strings.Trim(value, "[]")) != nil {
		return nil
	}
	name := strings.TrimSuffix(value, ".")
	if len(name) > 253 {
		return badInput("invalid %s %s: a host name is at most 253 characters", field, quoteShort(value))
	}
	for _, label := range strings.Split(name, ".") {
		if !hostnameLabelRe.MatchString(label) {
			return badInput("invalid %s %s: must be an IP address or a host name whose labels are 1-63 letters, digits or hyphens", field, quoteShort(value))
		}
	}
	return nil
}

func validatePort(field string, port int) error {
	if port < 1 || port > 65535 {
		return badInput("invalid %s %d: must be between 1 and 65535", field, port)
	}
	return nil
}

func validateOneOf(field, value string, allowed []string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return badInput("invalid %s %s: must be one of %s", field, quoteShort(value), strings.Join(allowed, ", "))
}
