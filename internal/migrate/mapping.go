package migrate

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/sshkey"
)

// target is what one KV version becomes in the engine.
type target struct {
	name  string                 // the engine's {name}: a domain or service in its canonical spelling
	write map[string]interface{} // the engine write
	// expect holds fields of the engine's read that equal these once the
	// write is done; material names those whose change is a new version.
	expect   map[string]string
	material []string
	// ignored names the source fields that are not copied.
	ignored []string
	// made is when KV made the version (zero when unknown).
	made time.Time
}

// badEntry is a fault in the source data; the message names the field and
// the rule, never the value.
type badEntry string

func (e badEntry) Error() string { return string(e) }

func bad(format string, args ...interface{}) error { return badEntry(fmt.Sprintf(format, args...)) }

// mappers turn a KV version into the engine's write, per engine type.
var mappers = map[string]func(name string, f *fields) (target, error){
	"smtp":     mapSMTP,
	"api-keys": mapAPIKey,
	"dkim":     mapDKIM,
	"ssh":      mapSSH,
}

// mapVersion maps one version's data and lists what it left out.
func mapVersion(kind, name string, data map[string]interface{}) (target, error) {
	f := &fields{data: data, used: map[string]bool{}}
	t, err := mappers[kind](name, f)
	if err != nil {
		return target{}, err
	}
	t.ignored = f.unused()
	return t, nil
}

// fields reads source fields by their engine name or an alias (the
// platform's camelCase spellings), and remembers which it used.
type fields struct {
	data map[string]interface{}
	used map[string]bool
}

// str returns the first given of names as a string; numbers are taken in
// their JSON spelling. Two names given with different values are a fault.
func (f *fields) str(names ...string) (string, bool, error) {
	var val, from string
	found := false
	for _, n := range names {
		raw, ok := f.data[n]
		if !ok || raw == nil {
			continue
		}
		f.used[n] = true
		s, err := scalar(n, raw)
		if err != nil {
			return "", false, err
		}
		if found && s != val {
			return "", false, bad("fields %s and %s are both given and differ; keep one", from, n)
		}
		val, from, found = s, n, true
	}
	return val, found, nil
}

// required is str for a field the engine needs; why says what for.
func (f *fields) required(why string, names ...string) (string, error) {
	v, ok, err := f.str(names...)
	if err != nil {
		return "", err
	}
	if !ok || strings.TrimSpace(v) == "" {
		return "", bad("missing field %s: %s", names[0], why)
	}
	return v, nil
}

func scalar(name string, raw interface{}) (string, error) {
	switch v := raw.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case int:
		return strconv.Itoa(v), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", bad("field %s has the wrong type: a %s, want a string", name, jsonKind(raw))
}

func jsonKind(v interface{}) string {
	switch v.(type) {
	case []interface{}:
		return "list"
	case map[string]interface{}:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// markUsed takes fields that are known and deliberately not copied.
func (f *fields) markUsed(names ...string) {
	for _, n := range names {
		if _, ok := f.data[n]; ok {
			f.used[n] = true
		}
	}
}

func (f *fields) unused() []string {
	var out []string
	for k := range f.data {
		if !f.used[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func mapSMTP(name string, f *fields) (target, error) {
	t := target{name: name, write: map[string]interface{}{}, expect: map[string]string{}, material: []string{"username", "password"}}
	for _, spec := range []struct {
		field, why string
		aliases    []string
	}{
		{"username", "the SMTP login", []string{"user", "smtp_username", "smtpUsername"}},
		{"password", "a missing password would make the engine generate a new one, which the mail server does not know", []string{"pass", "smtp_password", "smtpPassword"}},
		{"host", "the SMTP server", []string{"server", "hostname", "smtp_host", "smtpHost"}},
	} {
		v, err := f.required(spec.why, append([]string{spec.field}, spec.aliases...)...)
		if err != nil {
			return t, err
		}
		if spec.field != "password" {
			v = strings.TrimSpace(v) // as the engine stores it
		}
		t.write[spec.field], t.expect[spec.field] = v, v
	}
	port, err := smtpPort(f)
	if err != nil {
		return t, err
	}
	t.write["port"], t.expect["port"] = port, strconv.Itoa(port)
	enc, err := smtpEncryption(f)
	if err != nil {
		return t, err
	}
	t.write["encryption"], t.expect["encryption"] = enc, enc
	url, _, err := f.str("webmail_url", "webmailUrl", "webmail")
	if err != nil {
		return t, err
	}
	// Only a given one is compared: the engine keeps its own when a write
	// leaves it out, so expecting "" would fail every run.
	if url = strings.TrimSpace(url); url != "" {
		t.write["webmail_url"], t.expect["webmail_url"] = url, url
	}
	return t, nil
}

func smtpPort(f *fields) (int, error) {
	s, ok, err := f.str("port", "smtp_port", "smtpPort")
	if err != nil || !ok {
		return 587, err // the engine's default
	}
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		return 0, bad("field port must be a number from 1 to 65535")
	}
	return p, nil
}

// smtpEncryption maps the spellings seen in mail software (ssl, SMTPS,
// nodemailer's secure flag) to none, starttls or tls.
func smtpEncryption(f *fields) (string, error) {
	s, ok, err := f.str("encryption", "security", "tls_mode")
	if err != nil {
		return "", err
	}
	if !ok {
		secure, given, err := f.str("secure")
		if err != nil || !given {
			return "starttls", err
		}
		if b, err := strconv.ParseBool(secure); err == nil && b {
			return "tls", nil
		} else if err != nil {
			return "", bad("field secure must be true or false")
		}
		return "starttls", nil
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none", "plain", "":
		return "none", nil
	case "starttls":
		return "starttls", nil
	case "tls", "ssl", "ssl/tls", "smtps", "implicit":
		return "tls", nil
	}
	return "", bad("field encryption must be none, starttls, tls or ssl")
}

// apiKeySpec is one engine field of a provider key and its source aliases.
type apiKeySpec struct {
	field    string
	aliases  []string
	why      string // non-empty: required, and why the engine needs it
	material bool
}

var apiKeySpecs = map[string][]apiKeySpec{
	"postmark": {
		{field: "server_token", aliases: []string{"serverToken", "api_key", "apiKey", "token", "api_token"}, why: "the Postmark server API token", material: true},
		{field: "account_token", aliases: []string{"accountToken"}, material: true},
		{field: "message_stream", aliases: []string{"messageStream", "stream"}},
	},
	"mailgun": {
		{field: "api_key", aliases: []string{"apiKey", "private_api_key", "privateApiKey", "key"}, why: "the Mailgun API key", material: true},
		{field: "key_id", aliases: []string{"keyId"}, why: "Mailgun's id of the key (Keys API): the engine deletes the old key by it after a rotation", material: true},
		{field: "role", why: "the key's Mailgun role (admin, basic, sending, developer): new keys get the same"},
		{field: "domain", aliases: []string{"sending_domain", "sendingDomain"}},
		{field: "key_name", aliases: []string{"keyName", "description"}},
		{field: "region"},
	},
	"sendgrid": {
		{field: "api_key", aliases: []string{"apiKey", "key"}, why: "the SendGrid API key", material: true},
		{field: "api_key_id", aliases: []string{"apiKeyId", "key_id", "keyId"}, why: "SendGrid's id of the key: the engine deletes the old key by it after a rotation", material: true},
		{field: "scopes", why: "the key's scopes: new keys get exactly these (a key made without scopes has full access)"},
		{field: "key_name", aliases: []string{"keyName", "name"}},
		{field: "region"},
	},
	"ses": {
		{field: "access_key_id", aliases: []string{"accessKeyId", "aws_access_key_id"}, why: "the IAM access key id", material: true},
		{field: "secret_access_key", aliases: []string{"secretAccessKey", "aws_secret_access_key"}, why: "the IAM secret access key", material: true},
		{field: "iam_user", aliases: []string{"iamUser", "user"}, why: "the IAM user that owns the key: rotation creates the new key for it"},
		{field: "region", aliases: []string{"aws_region", "awsRegion"}, why: "the AWS region of SES"},
	},
}

// apiKeyServices lists the services in a stable order for messages.
func apiKeyServices() []string {
	out := make([]string, 0, len(apiKeySpecs))
	for s := range apiKeySpecs {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func mapAPIKey(name string, f *fields) (target, error) {
	service := strings.ToLower(strings.TrimSpace(name))
	specs, ok := apiKeySpecs[service]
	if !ok {
		return target{}, errSkip(fmt.Sprintf("service %q is not one the engine holds (%s)", name, strings.Join(apiKeyServices(), ", ")))
	}
	t := target{name: service, write: map[string]interface{}{}, expect: map[string]string{}}
	for _, spec := range specs {
		names := append([]string{spec.field}, spec.aliases...)
		var v string
		var err error
		if spec.field == "scopes" {
			v, err = scopesOf(f, spec.why)
		} else if spec.why != "" {
			v, err = f.required(spec.why, names...)
		} else {
			v, _, err = f.str(names...)
		}
		if err != nil {
			return t, err
		}
		if v = strings.TrimSpace(v); v == "" { // the engine trims every field
			continue
		}
		t.write[spec.field], t.expect[spec.field] = v, v
		if spec.material {
			t.material = append(t.material, spec.field)
		}
	}
	return t, nil
}

// scopesOf takes a list or a comma-separated string, sorted and without
// repeats as the engine stores them.
func scopesOf(f *fields, why string) (string, error) {
	raw, ok := f.data["scopes"]
	if !ok || raw == nil {
		return "", bad("missing field scopes: %s", why)
	}
	f.used["scopes"] = true
	var parts []string
	switch v := raw.(type) {
	case string:
		parts = strings.Split(v, ",")
	case []interface{}:
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				return "", bad("field scopes must be a list of strings")
			}
			parts = append(parts, s)
		}
	default:
		return "", bad("field scopes has the wrong type: a %s, want a list or a comma-separated string", jsonKind(raw))
	}
	s := normScopes(parts)
	if s == "" {
		return "", bad("missing field scopes: %s", why)
	}
	return s, nil
}

func normScopes(parts []string) string {
	set := map[string]bool{}
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// mapDKIM imports the private key under the selector its record is
// published at. The key is checked here with the engine's own rules so a
// bad one never reaches a write; its p= value is what the engine's read
// must show afterwards.
func mapDKIM(name string, f *fields) (target, error) {
	domain, err := dkimkey.CanonicalDomain(name)
	if err != nil {
		return target{}, bad("%v", err)
	}
	pemText, err := f.required("the DKIM signing key (PEM)", "private_key", "privateKey", "private_key_pem", "key")
	if err != nil {
		return target{}, err
	}
	selector, err := f.required("the selector its DNS record is published under ({selector}._domainkey)", "selector")
	if err != nil {
		return target{}, err
	}
	if err := dkimkey.CheckSelector("selector", selector); err != nil {
		return target{}, bad("%v", err)
	}
	pair, _, err := dkimkey.Import(pemText)
	if err != nil {
		return target{}, bad("%v", err)
	}
	if err := checkPublished(f, pair.PublicB64); err != nil {
		return target{}, err
	}
	return target{name: domain,
		write: map[string]interface{}{"private_key": pemText, "selector": selector},
		// status: an imported key is staged (pending) until activated, and
		// a read shows it; a migrated key must be the signing one.
		expect:   map[string]string{"public_key": pair.PublicB64, "selector": selector, "status": "active"},
		material: []string{"public_key", "selector"},
	}, nil
}

// checkPublished compares the public key the source says is published (a
// bare base64 key, or a DNS record with its p= tag) with the private key's:
// a source whose key does not match its record would make the engine sign
// with a key that no verifier can check.
func checkPublished(f *fields, public string) error {
	for _, names := range [][]string{{"public_key", "publicKey"}, {"dns_record", "dnsRecord"}} {
		v, ok, err := f.str(names...)
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		if got := publishedKey(v); got != public {
			return bad("field %s does not match the private key: the published record is of another key", names[0])
		}
	}
	return nil
}

// publishedKey is the base64 key of a DKIM record ("v=DKIM1; k=rsa; p=...",
// parsed by dnscheck's RFC 6376 tag-list parser) or of a bare key, without
// the white space DNS tools insert.
func publishedKey(v string) string {
	if tags, _, err := dnscheck.NormalizeDKIM(v); err == nil {
		if p, ok := tags["p"]; ok {
			return p
		}
	}
	return strings.Join(strings.Fields(v), "")
}

// mapSSH imports the private key; the engine's read shows its fingerprint.
func mapSSH(name string, f *fields) (target, error) {
	pemText, err := f.required("the SSH private key", "private_key", "privateKey")
	if err != nil {
		return target{}, err
	}
	pass, _, err := f.str("passphrase")
	if err != nil {
		return target{}, err
	}
	pub, _, err := f.str("public_key", "publicKey")
	if err != nil {
		return target{}, err
	}
	key, err := sshkey.ParsePrivate(pemText, pass)
	if err != nil {
		return target{}, bad("%v", err)
	}
	if _, _, err := sshkey.Info(key); err != nil {
		return target{}, bad("%v", err)
	}
	if pub != "" {
		if err := sshkey.CheckPublicMatches(pub, key); err != nil {
			return target{}, bad("%v", err)
		}
	}
	fp, err := sshkey.Fingerprint(key)
	if err != nil {
		return target{}, bad("private_key: %v", err)
	}
	w := map[string]interface{}{"private_key": pemText}
	if pass != "" {
		w["passphrase"] = pass
	}
	if pub != "" {
		w["public_key"] = pub
	}
	return target{name: name, write: w, expect: map[string]string{"fingerprint": fp}, material: []string{"fingerprint"}}, nil
}
