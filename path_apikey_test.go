package penguinmails

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailgun/mailgunfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/postmark/postmarkfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/sendgrid/sendgridfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses/sesfake"
)

// Tests of the api-keys type through the backend, against the providers'
// fake servers: what is stored and shown, what is refused, and what each
// rotation does at the provider.

// requester is what testEnv and engEnv both offer.
type requester interface {
	ok(op logical.Operation, path string, data map[string]interface{}) map[string]interface{}
}

// keyFake is what every provider fake offers.
type keyFake interface {
	URL() string
	Live() []string
	Requests(op string) []providertest.Request
}

// keyRig is one provider fake with a key written as version 1 of
// api-keys/t1/{service}.
type keyRig struct {
	service              string
	fake                 keyFake
	secretField, idField string
	current              provider.Key
	// account is the config/providers credential the secret names; zero
	// when the secret's own key authenticates.
	account provider.Key
	data    map[string]interface{}
	// checkCreate asserts the create request: authenticated with auth,
	// asking for a key like the current one named name.
	checkCreate func(t *testing.T, r providertest.Request, auth provider.Key, name string)
	// deletedID is the key id a delete request names.
	deletedID func(t *testing.T, r providertest.Request) string
}

func (r *keyRig) path() string { return "api-keys/t1/" + r.service }

// auth is the credential rotations authenticate with.
func (r *keyRig) auth() provider.Key {
	if r.account.Secret != "" {
		return r.account
	}
	return r.current
}

// wantLive asserts that the fake accepts exactly secrets, besides the
// account's own credential.
func (r *keyRig) wantLive(t *testing.T, secrets ...string) {
	t.Helper()
	want := slices.Clone(secrets)
	if r.account.Secret != "" {
		want = append(want, r.account.Secret)
	}
	slices.Sort(want)
	if got := r.fake.Live(); !slices.Equal(got, want) {
		t.Fatalf("%s accepts %d keys, want exactly %d (new/previous/account)", r.service, len(got), len(want))
	}
}

// newKeyRig starts the service's fake, seeds it, stores an account
// credential when withAccount, and returns the write data of the secret.
func newKeyRig(t *testing.T, env requester, service string, withAccount bool) *keyRig {
	t.Helper()
	var r *keyRig
	switch service {
	case "sendgrid":
		r = sendgridRig(t, env, withAccount)
	case "mailgun":
		r = mailgunRig(t, env, withAccount)
	case "ses":
		r = sesRig(t, env, withAccount)
	default:
		t.Fatalf("no rig for %s", service)
	}
	r.service = service
	r.data["base_url"] = r.fake.URL()
	return r
}

var sendgridAdminScopes = []string{"api_keys.create", "api_keys.delete", "api_keys.read"}

func sendgridRig(t *testing.T, env requester, withAccount bool) *keyRig {
	f := sendgridfake.New()
	t.Cleanup(f.Close)
	r := &keyRig{fake: f, secretField: "api_key", idField: "api_key_id"}
	if withAccount {
		r.account = f.AddKey("vault admin", sendgridAdminScopes...)
		env.ok(logical.UpdateOperation, "config/providers/sg-main", map[string]interface{}{"provider": "sendgrid", "api_key": r.account.Secret, "base_url": f.URL()})
		r.current = f.AddKey("billing mail", "mail.send", "stats.read")
	} else {
		r.current = f.AddKey("billing mail", append([]string{"mail.send"}, sendgridAdminScopes...)...)
	}
	r.data = map[string]interface{}{"api_key": r.current.Secret, "api_key_id": r.current.ID,
		"scopes": strings.Join(r.current.Scopes, ","), "key_name": r.current.Name}
	if withAccount {
		r.data["account"] = "sg-main"
	}
	scopes := r.current.Scopes
	r.checkCreate = func(t *testing.T, req providertest.Request, auth provider.Key, name string) {
		t.Helper()
		if req.Method != "POST" || req.Path != "/v3/api_keys" || req.Header.Get("Authorization") != "Bearer "+auth.Secret {
			t.Errorf("create sent %s %s, authenticated with the right key: %v", req.Method, req.Path,
				req.Header.Get("Authorization") == "Bearer "+auth.Secret)
		}
		var body map[string]interface{}
		if err := json.Unmarshal(req.Body, &body); err != nil {
			t.Fatalf("create body: %v", err)
		}
		raw, _ := json.Marshal(map[string]interface{}{"name": name, "scopes": scopes})
		want := map[string]interface{}{}
		_ = json.Unmarshal(raw, &want)
		if g, w := mustJSON(t, body), mustJSON(t, want); g != w {
			t.Errorf("create body %s, want %s", g, w)
		}
	}
	r.deletedID = func(t *testing.T, req providertest.Request) string {
		id, ok := strings.CutPrefix(req.Path, "/v3/api_keys/")
		if req.Method != "DELETE" || !ok {
			t.Errorf("delete sent %s %s", req.Method, req.Path)
		}
		return id
	}
	return r
}

func mailgunRig(t *testing.T, env requester, withAccount bool) *keyRig {
	f := mailgunfake.New()
	t.Cleanup(f.Close)
	r := &keyRig{fake: f, secretField: "api_key", idField: "key_id"}
	if withAccount {
		// The account's admin key manages a domain sending key.
		r.account = f.AddKey("admin", "vault admin", "")
		env.ok(logical.UpdateOperation, "config/providers/mg-main", map[string]interface{}{"provider": "mailgun", "api_key": r.account.Secret, "base_url": f.URL()})
		r.current = f.AddKey("sending", "billing mail", "mg.example.com")
	} else {
		r.current = f.AddKey("admin", "billing mail", "")
	}
	r.data = map[string]interface{}{"api_key": r.current.Secret, "key_id": r.current.ID, "role": r.current.Role,
		"key_name": r.current.Name, "region": "eu"}
	want := map[string]string{"role": r.current.Role, "kind": "user"}
	if r.current.Domain != "" {
		r.data["domain"] = r.current.Domain
		want["kind"], want["domain_name"] = "domain", r.current.Domain
	}
	if withAccount {
		r.data["account"] = "mg-main"
	}
	r.checkCreate = func(t *testing.T, req providertest.Request, auth provider.Key, name string) {
		t.Helper()
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("api:"+auth.Secret))
		if req.Method != "POST" || req.Path != "/v1/keys" || req.Header.Get("Authorization") != basic {
			t.Errorf("create sent %s %s, authenticated with the right key: %v", req.Method, req.Path, req.Header.Get("Authorization") == basic)
		}
		w := map[string]string{"description": name}
		for k, v := range want {
			w[k] = v
		}
		if got := multipartFields(t, req); mustJSON(t, got) != mustJSON(t, w) {
			t.Errorf("create form %v, want %v", got, w)
		}
	}
	r.deletedID = func(t *testing.T, req providertest.Request) string {
		id, ok := strings.CutPrefix(req.Path, "/v1/keys/")
		if req.Method != "DELETE" || !ok {
			t.Errorf("delete sent %s %s", req.Method, req.Path)
		}
		return id
	}
	return r
}

func sesRig(t *testing.T, env requester, withAccount bool) *keyRig {
	f := sesfake.New()
	t.Cleanup(f.Close)
	r := &keyRig{fake: f, secretField: "secret_access_key", idField: "access_key_id"}
	f.AddUser("mailer")
	r.current = f.AddKey("mailer")
	if withAccount {
		f.AddUser("vault-admin")
		r.account = f.AddKey("vault-admin")
		env.ok(logical.UpdateOperation, "config/providers/aws-main", map[string]interface{}{"provider": "ses",
			"access_key_id": r.account.ID, "secret_access_key": r.account.Secret, "base_url": f.URL()})
	}
	r.data = map[string]interface{}{"access_key_id": r.current.ID, "secret_access_key": r.current.Secret,
		"iam_user": "mailer", "region": "eu-west-1"}
	if withAccount {
		r.data["account"] = "aws-main"
	}
	r.checkCreate = func(t *testing.T, req providertest.Request, auth provider.Key, _ string) {
		t.Helper()
		if !strings.HasPrefix(req.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+auth.ID+"/") {
			t.Errorf("create signed as %q, want by %s", req.Header.Get("Authorization"), auth.ID)
		}
		got := formOf(t, req)
		want := url.Values{"Action": {"CreateAccessKey"}, "Version": {"2010-05-08"}, "UserName": {"mailer"}}
		if got.Encode() != want.Encode() {
			t.Errorf("create form %v, want %v", got, want)
		}
	}
	r.deletedID = func(t *testing.T, req providertest.Request) string {
		f := formOf(t, req)
		if f.Get("Action") != "DeleteAccessKey" || f.Get("UserName") != "mailer" {
			t.Errorf("delete form %v", f)
		}
		return f.Get("AccessKeyId")
	}
	return r
}

func formOf(t *testing.T, r providertest.Request) url.Values {
	t.Helper()
	v, err := url.ParseQuery(string(r.Body))
	if err != nil {
		t.Fatalf("request body is no form: %v", err)
	}
	return v
}

func multipartFields(t *testing.T, r providertest.Request) map[string]string {
	t.Helper()
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("create Content-Type %q: %v", r.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(strings.NewReader(string(r.Body)), params["boundary"])
	out := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("multipart body: %v", err)
		}
		b, _ := io.ReadAll(p)
		out[p.FormName()] = string(b)
	}
}

func mustJSON(t *testing.T, v interface{}) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noSecretIn fails when text contains any of secrets.
func noSecretIn(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s carries a secret (%d characters)", what, len(s))
		}
	}
}

// historyOf is the secret's history as stored.
func historyOf(t *testing.T, env *engEnv, service string) []historyEntry {
	t.Helper()
	return env.entry("api-keys", "t1", service).History
}

func removeRows(h []historyEntry) []historyEntry {
	var out []historyEntry
	for _, r := range h {
		if r.Operation == "remove" {
			out = append(out, r)
		}
	}
	return out
}

// readStatus is the HTTP status of a read of path.
func readStatus(env *testEnv, path string) int {
	env.t.Helper()
	resp, err := env.do(logical.ReadOperation, path, nil)
	return statusOf(logical.ReadOperation, resp, err)
}

// ---------------------------------------------------------------------------
// Writes and reads

// Every service stores its fields and shows them; secrets are in reads
// only, never in the write's answer.
func TestAPIKey_WriteAndReadEachService(t *testing.T) {
	env := newTestEnv(t)
	pmAccount := "pm-account-token-0123456789"
	cases := []struct {
		service string
		data    map[string]interface{}
		secrets []string
		want    map[string]interface{}
	}{
		{"sendgrid",
			map[string]interface{}{"api_key": "SG.aaaa.bbbb", "api_key_id": "sgid1", "scopes": "mail.send, api_keys.create,mail.send", "key_name": "billing"},
			[]string{"SG.aaaa.bbbb"},
			map[string]interface{}{"api_key_id": "sgid1", "scopes": []string{"api_keys.create", "mail.send"}, "key_name": "billing",
				"region": "global", "base_url": "https://api.sendgrid.com", "account": "", "service": "sendgrid"}},
		{"mailgun",
			map[string]interface{}{"api_key": "key-0123456789abcdef", "key_id": "mgid1", "role": "sending", "domain": "mg.example.com", "region": "eu"},
			[]string{"key-0123456789abcdef"},
			map[string]interface{}{"key_id": "mgid1", "role": "sending", "domain": "mg.example.com", "key_name": "",
				"region": "eu", "base_url": "https://api.eu.mailgun.net", "service": "mailgun"}},
		{"postmark",
			map[string]interface{}{"server_token": "pm-server-token-1", "account_token": pmAccount},
			[]string{"pm-server-token-1", pmAccount},
			map[string]interface{}{"message_stream": "outbound", "region": "global", "base_url": "https://api.postmarkapp.com", "service": "postmark"}},
		{"ses",
			map[string]interface{}{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
				"iam_user": "ses-sender", "region": "eu-west-1"},
			[]string{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
			map[string]interface{}{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "iam_user": "ses-sender", "region": "eu-west-1",
				"base_url": "https://iam.amazonaws.com", "smtp_username": "AKIAIOSFODNN7EXAMPLE",
				"smtp_endpoint": "email-smtp.eu-west-1.amazonaws.com", "service": "ses"}},
	}
	for _, tc := range cases {
		path := "api-keys/t1/" + tc.service
		written := env.ok(logical.CreateOperation, path, tc.data)
		noSecretIn(t, "the write answer of "+tc.service, mustJSON(t, written), tc.secrets...)
		svc := keyServiceNamed(tc.service)
		for _, field := range []string{svc.secretField, "account_token", "smtp_password"} {
			if _, shown := written[field]; shown {
				t.Errorf("%s write answer shows %s", tc.service, field)
			}
		}
		got := env.ok(logical.ReadOperation, path, nil)
		for k, v := range tc.want {
			if mustJSON(t, got[k]) != mustJSON(t, v) {
				t.Errorf("%s read %s = %v, want %v", tc.service, k, got[k], v)
			}
		}
		if got[svc.secretField] != tc.secrets[0] || got["version"] != 1 {
			t.Errorf("%s read: secret shown %v, version %v", tc.service, got[svc.secretField] == tc.secrets[0], got["version"])
		}
	}
	if got := env.ok(logical.ReadOperation, "api-keys/t1/postmark", nil); got["account_token"] != pmAccount {
		t.Error("postmark read does not show the account_token")
	}
	ses1 := env.ok(logical.ReadOperation, "api-keys/t1/ses", nil)
	want, _ := ses.SMTPPassword("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "eu-west-1")
	if ses1["smtp_password"] != want {
		t.Errorf("smtp_password %v, want ses.SMTPPassword of the stored key", ses1["smtp_password"])
	}
}

// The SES SMTP password of AWS's documented example key, computed outside
// Go (internal/provider/ses/smtp_test.go), follows the region: a
// settings-only write of region changes it and keeps the version.
func TestAPIKey_SESSMTPPasswordKnownVector(t *testing.T) {
	env := newTestEnv(t)
	path := "api-keys/t1/ses"
	env.ok(logical.CreateOperation, path, map[string]interface{}{"access_key_id": "AKIAIOSFODNN7EXAMPLE",
		"secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "iam_user": "ses-sender", "region": "us-east-1"})
	got := env.ok(logical.ReadOperation, path, nil)
	if got["smtp_password"] != "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9" || got["smtp_username"] != "AKIAIOSFODNN7EXAMPLE" ||
		got["smtp_endpoint"] != "email-smtp.us-east-1.amazonaws.com" {
		t.Fatalf("us-east-1: smtp %v / %v at %v", got["smtp_username"], got["smtp_password"], got["smtp_endpoint"])
	}
	env.ok(logical.UpdateOperation, path, map[string]interface{}{"region": "eu-west-1"})
	got = env.ok(logical.ReadOperation, path, nil)
	if got["smtp_password"] != "BMW5RDrXmmVs0lV7GpI4oLkHXpZ4stDsk6q91z1g38Pk" || got["version"] != 1 ||
		got["smtp_endpoint"] != "email-smtp.eu-west-1.amazonaws.com" {
		t.Fatalf("eu-west-1: smtp_password %v, version %v, endpoint %v", got["smtp_password"], got["version"], got["smtp_endpoint"])
	}
}

// Bad input is a 400 naming the field, and stores nothing: a new secret
// stays absent, an existing one unchanged.
func TestAPIKey_BadInputIsRefusedAndStoresNothing(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config/providers/mg-main", map[string]interface{}{"provider": "mailgun", "api_key": "key-admin"})
	valid := map[string]map[string]interface{}{
		"sendgrid": {"api_key": "SG.x.y", "api_key_id": "id1", "scopes": "mail.send"},
		"mailgun":  {"api_key": "key-1", "key_id": "k1", "role": "admin"},
		"postmark": {"server_token": "pm-token"},
		"ses": {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
			"iam_user": "mailer", "region": "eu-west-1"},
	}
	with := func(service string, change map[string]interface{}) map[string]interface{} {
		out := map[string]interface{}{}
		for k, v := range valid[service] {
			out[k] = v
		}
		for k, v := range change {
			if v == nil {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	cases := []struct {
		name, path string
		data       map[string]interface{}
		field      string
	}{
		{"unknown service", "api-keys/t1/sendgrd", with("sendgrid", nil), "service"},
		{"field of another service", "api-keys/t1/sendgrid", with("sendgrid", map[string]interface{}{"server_token": "x"}), "server_token"},
		{"iam_user on mailgun", "api-keys/t1/mailgun", with("mailgun", map[string]interface{}{"iam_user": "x"}), "iam_user"},
		{"malformed access key id", "api-keys/t1/ses", with("ses", map[string]interface{}{"access_key_id": "AKIA123"}), "access_key_id"},
		{"lower-case access key id", "api-keys/t1/ses", with("ses", map[string]interface{}{"access_key_id": "AKIAiosfodnn7example"}), "access_key_id"},
		{"bad secret_access_key", "api-keys/t1/ses", with("ses", map[string]interface{}{"secret_access_key": "short-secret"}), "secret_access_key"},
		{"sendgrid region", "api-keys/t1/sendgrid", with("sendgrid", map[string]interface{}{"region": "us"}), "region"},
		{"mailgun region", "api-keys/t1/mailgun", with("mailgun", map[string]interface{}{"region": "global"}), "region"},
		{"postmark region", "api-keys/t1/postmark", with("postmark", map[string]interface{}{"region": "eu"}), "region"},
		{"ses region", "api-keys/t1/ses", with("ses", map[string]interface{}{"region": "mars-1"}), "region"},
		{"missing api_key_id", "api-keys/t1/sendgrid", with("sendgrid", map[string]interface{}{"api_key_id": nil}), "api_key_id"},
		{"missing scopes", "api-keys/t1/sendgrid", with("sendgrid", map[string]interface{}{"scopes": nil}), "scopes"},
		{"empty scopes", "api-keys/t1/sendgrid", with("sendgrid", map[string]interface{}{"scopes": " , "}), "scopes"},
		{"missing api_key", "api-keys/t1/sendgrid", with("sendgrid", map[string]interface{}{"api_key": nil}), "api_key"},
		{"missing role", "api-keys/t1/mailgun", with("mailgun", map[string]interface{}{"role": nil}), "role"},
		{"unknown role", "api-keys/t1/mailgun", with("mailgun", map[string]interface{}{"role": "root"}), "role"},
		{"sending without domain", "api-keys/t1/mailgun", with("mailgun", map[string]interface{}{"role": "sending"}), "domain"},
		{"missing key_id", "api-keys/t1/mailgun", with("mailgun", map[string]interface{}{"key_id": nil}), "key_id"},
		{"missing iam_user", "api-keys/t1/ses", with("ses", map[string]interface{}{"iam_user": nil}), "iam_user"},
		{"missing ses region", "api-keys/t1/ses", with("ses", map[string]interface{}{"region": nil}), "region"},
		{"missing server_token", "api-keys/t1/postmark", with("postmark", map[string]interface{}{"server_token": nil}), "server_token"},
		{"http base_url off the machine", "api-keys/t1/sendgrid", with("sendgrid", map[string]interface{}{"base_url": "http://api.sendgrid.com"}), "base_url"},
		{"base_url with credentials", "api-keys/t1/mailgun", with("mailgun", map[string]interface{}{"base_url": "https://u:p@api.mailgun.net"}), "base_url"},
		{"account that does not exist", "api-keys/t1/sendgrid", with("sendgrid", map[string]interface{}{"account": "nope"}), "account"},
		{"account of another provider", "api-keys/t1/sendgrid", with("sendgrid", map[string]interface{}{"account": "mg-main"}), "account"},
		{"account on postmark", "api-keys/t1/postmark", with("postmark", map[string]interface{}{"account": "mg-main"}), "account"},
		{"auto_rotate on postmark", "api-keys/t1/postmark", with("postmark", map[string]interface{}{"auto_rotate": true}), "auto_rotate"},
		{"max_uses on postmark", "api-keys/t1/postmark", with("postmark", map[string]interface{}{"max_uses": 5}), "max_uses"},
		{"automated rotation on postmark", "api-keys/t1/postmark", with("postmark", map[string]interface{}{"disable_automated_rotation": false}), "auto_rotate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := env.storedKeys()
			msg := env.badRequest(logical.CreateOperation, tc.path, tc.data)
			if !strings.Contains(msg, tc.field) {
				t.Errorf("400 %q does not name %s", msg, tc.field)
			}
			noSecretIn(t, "the 400", msg, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "SG.x.y", "key-1", "pm-token", "key-admin")
			if after := env.storedKeys(); !slices.Equal(after, before) {
				t.Errorf("a refused write stored %v (before %v)", after, before)
			}
			if tc.field != "service" {
				if code := readStatus(env, tc.path); code != 404 {
					t.Errorf("read after a refused create: %d, want 404", code)
				}
			}
		})
	}

	// An existing secret is left as it was by a refused update.
	for service, data := range valid {
		path := "api-keys/t2/" + service
		env.ok(logical.CreateOperation, path, data)
		before := env.ok(logical.ReadOperation, path, nil)
		for _, bad := range []map[string]interface{}{{"region": "mars-1"}, {"base_url": "http://example.com"}, {"account": "nope"}} {
			env.badRequest(logical.UpdateOperation, path, bad)
		}
		if after := env.ok(logical.ReadOperation, path, nil); mustJSON(t, after) != mustJSON(t, before) {
			t.Errorf("%s changed by refused updates:\n%v\n%v", service, before, after)
		}
	}
}

// ---------------------------------------------------------------------------
// Rotations at the provider

// A rotation creates the new key at the provider like the current one,
// tests it, keeps the previous key valid for the overlap, and deletes it at
// the provider when the overlap ends, with the account's credential or the
// secret's own key.
func TestAPIKey_RotationAtEachProvider(t *testing.T) {
	for _, service := range []string{"sendgrid", "mailgun", "ses"} {
		for _, withAccount := range []bool{false, true} {
			name := service + "/own-key"
			if withAccount {
				name = service + "/account"
			}
			t.Run(name, func(t *testing.T) { testRotationAt(t, service, withAccount) })
		}
	}
}

func testRotationAt(t *testing.T, service string, withAccount bool) {
	env := newEngEnv(t)
	rig := newKeyRig(t, env, service, withAccount)
	path := rig.path()
	env.ok(logical.CreateOperation, path, rig.data)

	out := env.ok(logical.UpdateOperation, path+"/rotate", map[string]interface{}{"reason": "test"})
	if out["version"] != 2 || out["previous_version"] != 1 {
		t.Fatalf("rotate answered version %v previous %v", out["version"], out["previous_version"])
	}
	noSecretIn(t, "the rotate answer", mustJSON(t, out), rig.current.Secret)
	got := env.ok(logical.ReadOperation, path, nil)
	newSecret, _ := got[rig.secretField].(string)
	newID, _ := got[rig.idField].(string)
	if newSecret == "" || newID == "" || newSecret == rig.current.Secret || newID == rig.current.ID {
		t.Fatalf("read after rotate: a new key %v, a new id %v", newSecret != rig.current.Secret, newID != rig.current.ID)
	}
	rig.wantLive(t, newSecret, rig.current.Secret)

	creates := rig.fake.Requests("create")
	if len(creates) != 1 {
		t.Fatalf("%d create requests, want 1", len(creates))
	}
	keyName := "billing mail (v2)"
	rig.checkCreate(t, creates[0], rig.auth(), keyName)
	if service != "ses" && got["key_name"] != keyName {
		t.Errorf("key_name after rotate %v, want %q", got["key_name"], keyName)
	}
	if service == "sendgrid" && mustJSON(t, got["scopes"]) != mustJSON(t, rig.current.Scopes) {
		t.Errorf("scopes after rotate %v, want %v", got["scopes"], rig.current.Scopes)
	}
	if service == "mailgun" && (got["role"] != rig.current.Role || got["domain"] != rig.current.Domain) {
		t.Errorf("role/domain after rotate %v/%v", got["role"], got["domain"])
	}
	if service == "ses" && (got["iam_user"] != "mailer" || got["smtp_username"] != newID) {
		t.Errorf("iam_user %v, smtp_username is the new id: %v", got["iam_user"], got["smtp_username"] == newID)
	}
	if n := len(rig.fake.Requests("delete")); n != 0 {
		t.Fatalf("%d delete requests during the overlap", n)
	}

	// During the overlap version 1 is still readable and valid.
	old := env.ok(logical.ReadOperation, path, map[string]interface{}{"version": 1})
	if old[rig.secretField] != rig.current.Secret || old["status"] != statusGrace {
		t.Fatalf("version 1 during the overlap: secret kept %v, status %v", old[rig.secretField] == rig.current.Secret, old["status"])
	}

	env.clock.Advance(day - time.Minute)
	env.tick(env.b)
	rig.wantLive(t, newSecret, rig.current.Secret)

	env.clock.Advance(2 * time.Minute)
	env.tick(env.b)
	rig.wantLive(t, newSecret)
	deletes := rig.fake.Requests("delete")
	if len(deletes) != 1 || rig.deletedID(t, deletes[0]) != rig.current.ID {
		t.Fatalf("%d delete requests, want one of the previous key", len(deletes))
	}
	if rows := removeRows(historyOf(t, env, service)); len(rows) != 1 || rows[0].Result != "success" || rows[0].FromVersion != 1 {
		t.Fatalf("remove rows in history: %+v", rows)
	}
	got = env.ok(logical.ReadOperation, path, nil)
	if rows, _ := got["pending_removals"].([]interface{}); len(rows) != 0 || got[rig.secretField] != newSecret {
		t.Fatalf("after the overlap: pending_removals %v, current key kept %v", got["pending_removals"], got[rig.secretField] == newSecret)
	}
	old = env.ok(logical.ReadOperation, path, map[string]interface{}{"version": 1})
	if _, shown := old[rig.secretField]; shown || old["status"] != statusExpired {
		t.Fatalf("version 1 after the overlap: secret shown %v, status %v", shown, old["status"])
	}
}

// revoke_previous deletes the previous key at the provider in the
// rotation itself.
func TestAPIKey_RevokePreviousDeletesAtOnce(t *testing.T) {
	for _, service := range []string{"sendgrid", "mailgun", "ses"} {
		t.Run(service, func(t *testing.T) {
			env := newEngEnv(t)
			rig := newKeyRig(t, env, service, service == "mailgun")
			env.ok(logical.CreateOperation, rig.path(), rig.data)
			out := env.ok(logical.UpdateOperation, rig.path()+"/rotate", map[string]interface{}{"revoke_previous": true, "incident_id": "INC-1"})
			if mustJSON(t, out["revoked_versions"]) != "[1]" {
				t.Fatalf("revoked_versions %v", out["revoked_versions"])
			}
			got := env.ok(logical.ReadOperation, rig.path(), nil)
			rig.wantLive(t, got[rig.secretField].(string))
			deletes := rig.fake.Requests("delete")
			if len(deletes) != 1 || rig.deletedID(t, deletes[0]) != rig.current.ID {
				t.Fatalf("%d delete requests, want one of the previous key", len(deletes))
			}
			if rows, _ := got["pending_removals"].([]interface{}); len(rows) != 0 {
				t.Fatalf("pending_removals %v", rows)
			}
			old := env.ok(logical.ReadOperation, rig.path(), map[string]interface{}{"version": 1})
			if _, shown := old[rig.secretField]; shown || old["status"] != statusRevoked {
				t.Fatalf("version 1: secret shown %v, status %v", shown, old["status"])
			}
			if rows := removeRows(historyOf(t, env, service)); len(rows) != 1 || rows[0].Result != "success" || rows[0].Reason != removeRevoked {
				t.Fatalf("remove rows %+v", rows)
			}
		})
	}
}

// A grace period of 0 deletes the previous key at the rotation.
func TestAPIKey_ZeroGraceDeletesAtTheRotation(t *testing.T) {
	env := newEngEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"ses_grace_period": 0})
	rig := newKeyRig(t, env, "ses", false)
	env.ok(logical.CreateOperation, rig.path(), rig.data)
	env.ok(logical.UpdateOperation, rig.path()+"/rotate", nil)
	got := env.ok(logical.ReadOperation, rig.path(), nil)
	rig.wantLive(t, got[rig.secretField].(string))
	if rows := removeRows(historyOf(t, env, "ses")); len(rows) != 1 || rows[0].Result != "success" || rows[0].Reason != removeOverlapEnded {
		t.Fatalf("remove rows %+v", rows)
	}
	if old := env.ok(logical.ReadOperation, rig.path(), map[string]interface{}{"version": 1}); old["status"] != statusExpired {
		t.Fatalf("version 1 status %v", old["status"])
	}
}

// SendGrid's 100-key limit fails the rotation with what to do, and Vault
// deletes nothing to make room.
func TestAPIKey_SendGridKeyLimit(t *testing.T) {
	env := newEngEnv(t)
	rig := newKeyRig(t, env, "sendgrid", true)
	f := rig.fake.(*sendgridfake.Server)
	for f.Count() < sendgridfake.MaxKeys {
		f.AddKey("someone else's key", "mail.send")
	}
	env.ok(logical.CreateOperation, rig.path(), rig.data)
	before := f.Live()

	code, msg := env.status(logical.UpdateOperation, rig.path()+"/rotate", nil)
	if code != 502 {
		t.Fatalf("rotation at the limit: %d %s", code, msg)
	}
	for _, want := range []string{"limit", "100", "delete", "by hand"} {
		if !strings.Contains(msg, want) {
			t.Errorf("502 %q does not say %q", msg, want)
		}
	}
	if n := len(f.Requests("delete")); n != 0 || !slices.Equal(f.Live(), before) {
		t.Fatalf("the fake changed: %d deletes, %d keys", n, f.Count())
	}
	got := env.ok(logical.ReadOperation, rig.path(), nil)
	if got["version"] != 1 || got["api_key"] != rig.current.Secret || got["last_rotation_error_step"] != stepSet {
		t.Fatalf("after the failed rotation: version %v, step %v", got["version"], got["last_rotation_error_step"])
	}
}

// No key reaches an error message or the log when a rotation fails: not
// the current key, not the account's, not a new key that was made and
// undone, even when the provider quotes them in its answer.
func TestAPIKey_SecretsNeverInErrorsOrLogs(t *testing.T) {
	t.Run("sendgrid", func(t *testing.T) {
		env := newEngEnv(t)
		rig := newKeyRig(t, env, "sendgrid", false)
		f := rig.fake.(*sendgridfake.Server)
		f.EchoSecrets(true)
		env.ok(logical.CreateOperation, rig.path(), rig.data)

		// The test step fails: the new key was made and is undone.
		f.Fail("test", 500, 1)
		code, msg1 := env.status(logical.UpdateOperation, rig.path()+"/rotate", nil)
		if code != 502 || !strings.Contains(msg1, "test step") {
			t.Fatalf("failed test step: %d %s", code, msg1)
		}
		rig.wantLive(t, rig.current.Secret)
		// The current key no longer may create keys: SendGrid answers 403,
		// quoting the key (EchoSecrets).
		env.ok(logical.UpdateOperation, "config/providers/weak", map[string]interface{}{"provider": "sendgrid", "api_key": "SG.unknown.account-key",
			"base_url": rig.fake.URL()})
		env.ok(logical.UpdateOperation, rig.path(), map[string]interface{}{"account": "weak"})
		code, msg2 := env.status(logical.UpdateOperation, rig.path()+"/rotate", nil)
		if code != 502 {
			t.Fatalf("refused create: %d %s", code, msg2)
		}
		got := env.ok(logical.ReadOperation, rig.path(), nil)
		for what, text := range map[string]string{"the test-step 502": msg1, "the create 502": msg2, "the log": env.logs.String(),
			"last_rotation_error": got["last_rotation_error"].(string), "history": mustJSON(t, historyOf(t, env, "sendgrid"))} {
			noSecretIn(t, what, text, rig.current.Secret, "SG.unknown.account-key")
			if strings.Contains(text, "SG.") {
				t.Errorf("%s carries something like a SendGrid key", what)
			}
		}
		if got["version"] != 1 || got["api_key"] != rig.current.Secret {
			t.Fatalf("version %v after failed rotations", got["version"])
		}
	})
	t.Run("ses", func(t *testing.T) {
		env := newEngEnv(t)
		rig := newKeyRig(t, env, "ses", true)
		f := rig.fake.(*sesfake.Server)
		f.SetErrorMessage("refused " + rig.current.Secret + " " + rig.account.Secret)
		env.ok(logical.CreateOperation, rig.path(), rig.data)
		f.Fail("create", 403, 2)
		code, msg := env.status(logical.UpdateOperation, rig.path()+"/rotate", nil)
		if code != 502 {
			t.Fatalf("refused create: %d %s", code, msg)
		}
		got := env.ok(logical.ReadOperation, rig.path(), nil)
		for what, text := range map[string]string{"the 502": msg, "the log": env.logs.String(),
			"last_rotation_error": got["last_rotation_error"].(string), "history": mustJSON(t, historyOf(t, env, "ses"))} {
			noSecretIn(t, what, text, rig.current.Secret, rig.account.Secret, "refused ")
		}
		if !strings.Contains(msg, "AccessDenied") {
			t.Errorf("502 %q does not name the provider's error code", msg)
		}
	})
}

// ---------------------------------------------------------------------------
// Postmark: made by hand, rotated only with the caller's new token

func postmarkSecret(t *testing.T, env *testEnv) (*postmarkfake.Server, provider.Key) {
	t.Helper()
	f := postmarkfake.New()
	t.Cleanup(f.Close)
	cur := f.AddServer("billing")
	env.ok(logical.CreateOperation, "api-keys/t1/postmark", map[string]interface{}{"server_token": cur.Secret, "base_url": f.URL()})
	return f, cur
}

func TestAPIKey_PostmarkRotationTakesTheCallersToken(t *testing.T) {
	env := newTestEnv(t)
	f, cur := postmarkSecret(t, env)
	path := "api-keys/t1/postmark"

	if msg := env.badRequest(logical.UpdateOperation, path+"/rotate", nil); !strings.Contains(msg, "server_token") {
		t.Errorf("rotate without server_token: %q", msg)
	}
	resp, err := env.do(logical.UpdateOperation, path+"/rotate", map[string]interface{}{"server_token": "not-a-postmark-token"})
	if code := statusOf(logical.UpdateOperation, resp, err); code != 502 || err == nil {
		t.Fatalf("rotate with a token Postmark refuses: %d %v %v", code, err, resp)
	}
	noSecretIn(t, "the 502", err.Error(), "not-a-postmark-token", cur.Secret)
	got := env.ok(logical.ReadOperation, path, nil)
	if got["version"] != 1 || got["current_version"] != 1 || got["server_token"] != cur.Secret {
		t.Fatalf("after a refused token: version %v", got["current_version"])
	}

	next := f.AddToken("billing")
	out := env.ok(logical.UpdateOperation, path+"/rotate", map[string]interface{}{"server_token": next.Secret})
	// The refused attempt used version 2; numbers are never reused.
	if out["version"] != 3 || out["previous_version"] != 1 {
		t.Fatalf("rotate answered version %v previous %v", out["version"], out["previous_version"])
	}
	noSecretIn(t, "the rotate answer", mustJSON(t, out), next.Secret, cur.Secret)
	got = env.ok(logical.ReadOperation, path, nil)
	if got["server_token"] != next.Secret || got["version"] != 3 {
		t.Fatalf("read after rotate: version %v, new token %v", got["version"], got["server_token"] == next.Secret)
	}
	if old := env.ok(logical.ReadOperation, path, map[string]interface{}{"version": 1}); old["server_token"] != cur.Secret {
		t.Fatal("version 1 not readable during the overlap")
	}
	if n := len(f.Requests("")); n != 2 {
		t.Errorf("%d calls at Postmark, want the two tests of supplied tokens", n)
	}
	// Postmark has no API that revokes tokens: nothing is owed a removal.
	env.clock.Advance(day + time.Minute)
	env.tick()
	if got := env.ok(logical.ReadOperation, path, nil); len(got["pending_removals"].([]interface{})) != 0 {
		t.Fatalf("pending_removals %v", got["pending_removals"])
	}
}

// Jobs and the scheduler never rotate a Postmark token: they cannot make
// one. A job reports it skipped; the scheduler leaves it overdue.
func TestAPIKey_PostmarkIsNeverRotatedAutomatically(t *testing.T) {
	env := newTestEnv(t)
	postmarkSecret(t, env)
	sg := sendgridfake.New()
	t.Cleanup(sg.Close)
	k := sg.AddKey("billing mail", append([]string{"mail.send"}, sendgridAdminScopes...)...)
	env.ok(logical.CreateOperation, "api-keys/t1/sendgrid", map[string]interface{}{"api_key": k.Secret, "api_key_id": k.ID,
		"scopes": strings.Join(k.Scopes, ","), "key_name": k.Name, "base_url": sg.URL()})

	job := env.runJob(env.startJob("rotate/bulk", map[string]interface{}{"types": "api-keys", "reason": "drill"}))
	if job["state"] != jobSucceeded || job["total"] != 2 || job["rotated"] != 1 || job["skipped"] != 1 {
		t.Fatalf("bulk job: %v", job)
	}
	job = env.runJob(env.startJob("rotate-tenant/t1", map[string]interface{}{"reason": "drill"}))
	if job["state"] != jobSucceeded || job["rotated"] != 1 || job["skipped"] != 1 {
		t.Fatalf("tenant job: %v", job)
	}
	if got := env.ok(logical.ReadOperation, "api-keys/t1/postmark", nil); got["version"] != 1 {
		t.Fatalf("postmark rotated by a job: version %v", got["version"])
	}
	if got := env.ok(logical.ReadOperation, "api-keys/t1/sendgrid", nil); got["version"] != 3 {
		t.Fatalf("sendgrid version %v after two jobs, want 3", got["version"])
	}

	// Even an entry that asks for automatic rotation (written before the
	// rule, or by hand) is left alone by the scheduler.
	ref := secretRef{kind: env.b.kinds["api-keys"], tenant: "t1", name: "postmark"}
	if _, err := env.b.modify(t.Context(), env.storage, ref, func(e *secretEntry, _ *engineConfig, _ time.Time) error {
		e.AutoRotate = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(100 * day)
	env.tick()
	env.tick()
	got := env.ok(logical.ReadOperation, "api-keys/t1/postmark", nil)
	if got["version"] != 1 || got["rotation_status"] != rotationOverdue || got["last_rotation_error"] != "" {
		t.Fatalf("postmark after 100 days: version %v, status %v, error %q", got["version"], got["rotation_status"], got["last_rotation_error"])
	}
	rows := statusRows(env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"status": "overdue", "type": "api-keys"}))
	found := false
	for _, r := range rows {
		found = found || r["path"] == "api-keys/t1/postmark"
	}
	if !found {
		t.Fatalf("rotation/status overdue does not list the postmark secret: %v", rows)
	}
}

// ---------------------------------------------------------------------------
// Config

// Each provider has its own settings; postmark's grace period is written
// and used like the others.
func TestAPIKey_ConfigPerProvider(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"postmark_grace_period": "2h", "postmark_rotation_period": "30d"})
	cfg := env.ok(logical.ReadOperation, "config", nil)
	want := map[string]interface{}{
		"postmark_grace_period": "2h", "postmark_rotation_period": "720h", "postmark_alert_threshold": "168h",
		"sendgrid_grace_period": "24h", "sendgrid_rotation_period": "2160h", "ses_grace_period": "24h",
		"mailgun_rotation_period": "2160h", "mailgun_risk_level": "medium",
	}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("config %s = %v, want %v", k, cfg[k], v)
		}
	}
	f, _ := postmarkSecret(t, env)
	next := f.AddToken("billing")
	env.ok(logical.UpdateOperation, "api-keys/t1/postmark/rotate", map[string]interface{}{"server_token": next.Secret})
	got := env.ok(logical.ReadOperation, "api-keys/t1/postmark", nil)
	v1 := got["versions"].(map[string]interface{})["1"].(map[string]interface{})
	if v1["grace_until"] != formatTime(env.clock.Now().Add(2*time.Hour)) || got["rotation_period"] != "720h" {
		t.Fatalf("postmark: version 1 grace_until %v, rotation_period %v", v1["grace_until"], got["rotation_period"])
	}
}

// SendGrid's api_key_id is base64url: it may begin with - or _ (real ids
// and the fake's random ones do, one time in 32). A leading dot is still
// refused.
func TestAPIKey_SendGridIDsMayBeginWithDashOrUnderscore(t *testing.T) {
	env := newTestEnv(t)
	for _, id := range []string{"-bIpEC20YJ4BZ_glFgmdxA", "_qfTQ6KG0QBiwWdJ0pCLCA"} {
		env.ok(logical.UpdateOperation, "api-keys/t1/sendgrid", map[string]interface{}{"api_key": "SG.x." + id, "api_key_id": id, "scopes": "mail.send"})
		if got := env.ok(logical.ReadOperation, "api-keys/t1/sendgrid", nil); got["api_key_id"] != id {
			t.Fatalf("api_key_id %v, want %s", got["api_key_id"], id)
		}
	}
	for _, id := range []string{"..", ".hidden"} {
		if msg := env.badRequest(logical.UpdateOperation, "api-keys/t1/sendgrid", map[string]interface{}{"api_key": "SG.y", "api_key_id": id}); !strings.Contains(msg, "api_key_id") {
			t.Errorf("id %q: %s", id, msg)
		}
	}
}

// A key the provider made whose id the engine lost (storage failed between
// the provider's answer and the engine's write) is found by the rollback
// (provider.Finder: by its unique name, or its IAM user and creation time)
// and deleted: nothing stays valid at the provider that Vault does not
// hold.
func TestAPIKey_KeyLostBeforeItsIDWasStoredIsFoundAndDeleted(t *testing.T) {
	for _, service := range []string{"sendgrid", "mailgun", "ses"} {
		t.Run(service, func(t *testing.T) {
			env := newEngEnv(t)
			// The providers stamp keys with the real time; Find compares it
			// with the pending version's time.
			env.clock.Advance(time.Since(env.clock.Now()))
			rig := newKeyRig(t, env, service, false)
			env.ok(logical.CreateOperation, rig.path(), rig.data)

			entryKey := secretStorageKey("api-keys", "t1", service)
			puts := 0
			env.s.setFailPut(func(key string) error {
				if key == entryKey {
					if puts++; puts == 2 { // the pending version is stored, set runs, its id is not
						return errors.New("storage unavailable")
					}
				}
				return nil
			})
			if code, msg := env.status(logical.UpdateOperation, rig.path()+"/rotate", nil); code != 500 {
				t.Fatalf("rotate with a failing store: %d %s", code, msg)
			}
			env.s.setFailPut(nil)
			if n := len(rig.fake.Live()); n != 2 {
				t.Fatalf("%d keys at the provider, want the current one and the orphan", n)
			}
			if len(env.wals()) != 1 {
				t.Fatalf("WALs %v, want the rotation's", env.wals())
			}

			if err := env.rollback(env.b); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			rig.wantLive(t, rig.current.Secret)
			deletes := rig.fake.Requests("delete")
			if len(deletes) != 1 || rig.deletedID(t, deletes[0]) == rig.current.ID {
				t.Fatalf("%d delete requests, want one of the orphan", len(deletes))
			}
			if len(env.wals()) != 0 {
				t.Fatalf("WALs left: %v", env.wals())
			}
			got := env.ok(logical.ReadOperation, rig.path(), nil)
			if got["current_version"] != 1 || got[rig.secretField] != rig.current.Secret {
				t.Fatalf("after the rollback: current_version %v", got["current_version"])
			}
			if e := env.entry("api-keys", "t1", service); e.pending() != nil {
				t.Fatal("a pending version is left")
			}
		})
	}
}

// A write that corrects the secret of a key but keeps its id (a typo in
// the first write) makes a new version of the same provider key: when the
// old version's overlap ends, the key it names is the current one, and it
// must not be deleted at the provider.
func TestAPIKey_CorrectedWriteNeverDeletesTheCurrentKey(t *testing.T) {
	for _, service := range []string{"sendgrid", "ses"} {
		t.Run(service, func(t *testing.T) {
			env := newEngEnv(t)
			rig := newKeyRig(t, env, service, false)
			typo := map[string]interface{}{}
			for k, v := range rig.data {
				typo[k] = v
			}
			typo[rig.secretField] = rig.current.Secret[:len(rig.current.Secret)-1] + "A"
			if typo[rig.secretField] == rig.current.Secret {
				typo[rig.secretField] = rig.current.Secret[:len(rig.current.Secret)-1] + "B"
			}
			env.ok(logical.CreateOperation, rig.path(), typo)
			env.ok(logical.UpdateOperation, rig.path(), map[string]interface{}{rig.secretField: rig.current.Secret})
			if got := env.ok(logical.ReadOperation, rig.path(), nil); got["version"] != 2 || got[rig.idField] != rig.current.ID {
				t.Fatalf("corrected write: version %v", got["version"])
			}
			env.clock.Advance(day + time.Minute)
			env.tick(env.b)
			rig.wantLive(t, rig.current.Secret)
			if n := len(rig.fake.Requests("delete")); n != 0 {
				t.Fatalf("%d delete requests of the key in use", n)
			}
			got := env.ok(logical.ReadOperation, rig.path(), nil)
			if rows, _ := got["pending_removals"].([]interface{}); len(rows) != 0 {
				t.Fatalf("pending_removals %v", rows)
			}
		})
	}
}

// rotate takes server_token for Postmark only, and checks it like a write.
func TestAPIKey_RotateServerTokenRules(t *testing.T) {
	env := newTestEnv(t)
	postmarkSecret(t, env)
	env.ok(logical.CreateOperation, "api-keys/t1/sendgrid", map[string]interface{}{"api_key": "SG.a.b", "api_key_id": "id1", "scopes": "mail.send"})
	if msg := env.badRequest(logical.UpdateOperation, "api-keys/t1/sendgrid/rotate", map[string]interface{}{"server_token": "x"}); !strings.Contains(msg, "server_token") {
		t.Errorf("server_token on a sendgrid rotate: %q", msg)
	}
	if msg := env.badRequest(logical.UpdateOperation, "api-keys/t1/postmark/rotate", map[string]interface{}{"server_token": "two words"}); !strings.Contains(msg, "server_token") || strings.Contains(msg, "two words") {
		t.Errorf("server_token with a space: %q", msg)
	}
	for _, p := range []string{"api-keys/t1/sendgrid", "api-keys/t1/postmark"} {
		if got := env.ok(logical.ReadOperation, p, nil); got["current_version"] != 1 || got["last_rotation_error"] != "" {
			t.Errorf("%s after refused rotations: version %v, error %q", p, got["current_version"], got["last_rotation_error"])
		}
	}
}

// A removal that fails (the account's key no longer works, and the
// provider quotes it) stays queued with its error, is reported failing,
// and neither the error nor the log carries a key.
func TestAPIKey_FailingRemovalIsShownWithoutSecrets(t *testing.T) {
	env := newEngEnv(t)
	rig := newKeyRig(t, env, "sendgrid", true)
	f := rig.fake.(*sendgridfake.Server)
	env.ok(logical.CreateOperation, rig.path(), rig.data)
	env.ok(logical.UpdateOperation, rig.path()+"/rotate", nil)
	newSecret := env.ok(logical.ReadOperation, rig.path(), nil)["api_key"].(string)

	f.EchoSecrets(true)
	env.ok(logical.UpdateOperation, "config/providers/sg-main", map[string]interface{}{"api_key": "SG.revoked.account-key"})
	env.clock.Advance(day + time.Minute)
	env.tick(env.b)

	got := env.ok(logical.ReadOperation, rig.path(), nil)
	rows, _ := got["pending_removals"].([]interface{})
	if len(rows) != 1 {
		t.Fatalf("pending_removals %v, want version 1", got["pending_removals"])
	}
	row := rows[0].(map[string]interface{})
	lastErr, _ := row["last_error"].(string)
	if row["version"] != 1 || row["attempts"] != 1 || !strings.Contains(lastErr, "401") {
		t.Fatalf("pending removal %v", row)
	}
	failing := statusRows(env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"status": "failing"}))
	if len(failing) != 1 || failing[0]["path"] != rig.path() {
		t.Fatalf("rotation/status failing: %v", failing)
	}
	for what, text := range map[string]string{"last_error": lastErr, "the log": env.logs.String(),
		"history": mustJSON(t, historyOf(t, env, "sendgrid")), "rotation/status": mustJSON(t, failing)} {
		noSecretIn(t, what, text, rig.current.Secret, newSecret, rig.account.Secret, "SG.revoked.account-key")
	}
	rig.wantLive(t, newSecret, rig.current.Secret)

	// With the account's key fixed, the retry after the backoff succeeds.
	env.ok(logical.UpdateOperation, "config/providers/sg-main", map[string]interface{}{"api_key": rig.account.Secret})
	env.clock.Advance(2 * time.Minute)
	env.tick(env.b)
	rig.wantLive(t, newSecret)
	if rows, _ := env.ok(logical.ReadOperation, rig.path(), nil)["pending_removals"].([]interface{}); len(rows) != 0 {
		t.Fatalf("pending_removals after the retry: %v", rows)
	}
}
