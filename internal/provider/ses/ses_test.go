package ses_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses/sesfake"
)

const region = "eu-west-1"

// env is a fake with an admin user whose key is the driver's Auth, and a
// user "mailer" with one current key.
type env struct {
	fake    *sesfake.Server
	admin   provider.Key
	current provider.Key
	driver  *ses.Driver
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fake := sesfake.New()
	t.Cleanup(fake.Close)
	fake.AddUser("admin")
	fake.AddUser("mailer")
	e := &env{fake: fake, admin: fake.AddKey("admin"), current: fake.AddKey("mailer")}
	e.driver = e.newDriver(t, e.admin)
	return e
}

func (e *env) newDriver(t *testing.T, auth provider.Key) *ses.Driver {
	t.Helper()
	d, err := ses.New(provider.Endpoint{BaseURL: e.fake.URL(), Region: region, Auth: auth})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	d.KeyPropagation = 0
	return d
}

func form(t *testing.T, r providertest.Request) url.Values {
	t.Helper()
	v, err := url.ParseQuery(string(r.Body))
	if err != nil {
		t.Fatalf("request body is no form: %v", err)
	}
	return v
}

// onlyRequest returns the one request of op.
func onlyRequest(t *testing.T, fake *sesfake.Server, op string) providertest.Request {
	t.Helper()
	reqs := fake.Requests(op)
	if len(reqs) != 1 {
		t.Fatalf("%d %s requests, want 1", len(reqs), op)
	}
	return reqs[0]
}

// assertSigned checks the request is a form POST to / signed by keyID for
// the scope's region and service.
func assertSigned(t *testing.T, r providertest.Request, keyID, scopeRegion, service string) {
	t.Helper()
	if r.Method != http.MethodPost || r.Path != "/" || r.Query != "" {
		t.Errorf("request %s %s?%s, want POST / without query", r.Method, r.Path, r.Query)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		t.Errorf("Content-Type %q", ct)
	}
	auth := r.Header.Get("Authorization")
	want := "AWS4-HMAC-SHA256 Credential=" + keyID + "/"
	scope := "/" + scopeRegion + "/" + service + "/aws4_request,"
	if !strings.HasPrefix(auth, want) || !strings.Contains(auth, scope) {
		t.Errorf("Authorization %q, want %s...%s", auth, want, scope)
	}
}

func assertForm(t *testing.T, got url.Values, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("form %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("form %s = %q, want %q", k, got.Get(k), v)
		}
	}
}

func asProviderError(t *testing.T, err error) *provider.Error {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is no *provider.Error", err, err)
	}
	if pe.Provider != "ses" {
		t.Errorf("Provider %q", pe.Provider)
	}
	return pe
}

func TestCreateTestDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	k, err := e.driver.Create(ctx, provider.Key{User: "mailer", ID: e.current.ID})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if k.User != "mailer" || ses.CheckAccessKeyID(k.ID) != nil || ses.CheckSecretAccessKey(k.Secret) != nil {
		t.Fatalf("Create returned %+v", provider.Key{ID: k.ID, User: k.User})
	}
	if k.ID == e.current.ID || k.Secret == e.current.Secret {
		t.Fatal("Create returned the current key")
	}
	create := onlyRequest(t, e.fake, "create")
	assertSigned(t, create, e.admin.ID, "us-east-1", "iam")
	assertForm(t, form(t, create), map[string]string{"Action": "CreateAccessKey", "Version": "2010-05-08", "UserName": "mailer"})

	if err := e.driver.Test(ctx, k); err != nil {
		t.Fatalf("Test of the new key: %v", err)
	}
	test := onlyRequest(t, e.fake, "test")
	assertSigned(t, test, k.ID, region, "sts")
	assertForm(t, form(t, test), map[string]string{"Action": "GetCallerIdentity", "Version": "2011-06-15"})

	if err := e.driver.Delete(ctx, e.current); err != nil {
		t.Fatalf("Delete of the old key: %v", err)
	}
	del := onlyRequest(t, e.fake, "delete")
	assertSigned(t, del, e.admin.ID, "us-east-1", "iam")
	assertForm(t, form(t, del), map[string]string{"Action": "DeleteAccessKey", "Version": "2010-05-08",
		"UserName": "mailer", "AccessKeyId": e.current.ID})

	want := []string{e.admin.Secret, k.Secret}
	slices.Sort(want)
	if got := e.fake.Live(); !slices.Equal(got, want) {
		t.Errorf("live secrets: %d, want the admin key and the new key only", len(got))
	}
}

func TestWrongSecretIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	forged := e.current
	forged.Secret = strings.Repeat("A", 40)

	err := e.driver.Test(ctx, forged)
	pe := asProviderError(t, err)
	if pe.Status != http.StatusForbidden || pe.Code != "SignatureDoesNotMatch" || pe.Op != "test key" {
		t.Errorf("Test with a wrong secret: %v", err)
	}

	badAuth := e.admin
	badAuth.Secret = strings.Repeat("B", 40)
	_, err = e.newDriver(t, badAuth).Create(ctx, provider.Key{User: "mailer"})
	pe = asProviderError(t, err)
	if pe.Status != http.StatusForbidden || pe.Code != "SignatureDoesNotMatch" || pe.Op != "create key" {
		t.Errorf("Create with a wrong Auth secret: %v", err)
	}
	if len(e.fake.KeyIDs("mailer")) != 1 {
		t.Error("a refused Create made a key")
	}
}

func TestUnknownKeyIsRefused(t *testing.T) {
	e := newEnv(t)
	unknown := provider.Key{ID: "AKIAIOSFODNN7EXAMPLE", Secret: e.current.Secret, User: "mailer"}
	err := e.driver.Test(context.Background(), unknown)
	pe := asProviderError(t, err)
	if pe.Status != http.StatusForbidden || pe.Code != "InvalidClientTokenId" {
		t.Errorf("Test of an unknown key: %v", err)
	}
	if pe.Temporary() {
		t.Error("a refused key is reported temporary")
	}
}

func TestKeyLimit(t *testing.T) {
	e := newEnv(t)
	e.fake.AddKey("mailer") // mailer now has two keys
	before := e.fake.Live()

	_, err := e.driver.Create(context.Background(), provider.Key{User: "mailer"})
	if !errors.Is(err, provider.ErrKeyLimit) {
		t.Fatalf("Create at the limit: %v, want ErrKeyLimit", err)
	}
	pe := asProviderError(t, err)
	if pe.Status != http.StatusConflict || pe.Code != "LimitExceeded" {
		t.Errorf("error %v, want HTTP 409 LimitExceeded", err)
	}
	if !strings.Contains(err.Error(), "two access keys") || !strings.Contains(err.Error(), "by hand") {
		t.Errorf("error %q does not tell to delete a key by hand", err)
	}
	if len(e.fake.Requests("delete")) != 0 || !slices.Equal(e.fake.Live(), before) {
		t.Error("Create at the limit deleted or made a key")
	}
}

func TestDeleteOfAGoneKeySucceeds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.driver.Delete(ctx, e.current); err != nil {
		t.Fatal(err)
	}
	if err := e.driver.Delete(ctx, e.current); err != nil {
		t.Fatalf("second Delete (IAM answers NoSuchEntity): %v", err)
	}
	if n := len(e.fake.Requests("delete")); n != 2 {
		t.Errorf("%d delete requests, want 2", n)
	}
	if err := e.driver.Delete(ctx, provider.Key{ID: e.current.ID}); err == nil {
		t.Error("Delete without an IAM user succeeded")
	}
}

func TestKeyOfAnotherUserFailsTest(t *testing.T) {
	e := newEnv(t)
	e.fake.AddUser("bob")
	bobs := e.fake.AddKey("bob")
	bobs.User = "mailer"
	err := e.driver.Test(context.Background(), bobs)
	pe := asProviderError(t, err)
	if pe.Op != "test key" || !strings.Contains(err.Error(), `"mailer"`) {
		t.Errorf("Test of bob's key as mailer's: %v", err)
	}

	// A user under a path is matched by name.
	e.fake.AddUserWithPath("sender", "/mail/eu/")
	k := e.fake.AddKey("sender")
	if err := e.driver.Test(context.Background(), k); err != nil {
		t.Errorf("Test of a key of a user under a path: %v", err)
	}
	// ...and not by a suffix of the name.
	k.User = "der"
	if err := e.driver.Test(context.Background(), k); err == nil {
		t.Error("Test matched a suffix of the user name")
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.fake.AddKey("mailer")
	echo := "echo " + e.admin.Secret + " " + e.current.Secret
	e.fake.SetErrorMessage(echo)

	_, errLimit := e.driver.Create(ctx, provider.Key{User: "mailer"})
	forged := e.current
	forged.Secret = strings.Repeat("C", 40)
	errSig := e.driver.Test(ctx, forged)
	e.fake.Fail("delete", http.StatusInternalServerError, 5)
	errFail := e.driver.Delete(ctx, e.current)
	for _, err := range []error{errLimit, errSig, errFail} {
		if err == nil {
			t.Fatal("expected an error")
		}
		msg := err.Error()
		for _, secret := range []string{e.admin.Secret, e.current.Secret, forged.Secret, "echo "} {
			if strings.Contains(msg, secret) {
				t.Errorf("error %q carries a secret or the answer's message", msg)
			}
		}
	}
}

func TestServerErrorIsTemporaryAfterOneRetry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.fake.Fail("create", http.StatusInternalServerError, 5)
	_, err := e.driver.Create(ctx, provider.Key{User: "mailer"})
	pe := asProviderError(t, err)
	if pe.Status != http.StatusInternalServerError || !pe.Temporary() || pe.Code != "ServiceFailure" {
		t.Errorf("Create on 500: %v", err)
	}
	if n := len(e.fake.Requests("create")); n != 2 {
		t.Errorf("%d create attempts, want 2 (one retry)", n)
	}

	e.fake.Reset()
	e.fake.Fail("delete", http.StatusServiceUnavailable, 1)
	if err := e.driver.Delete(ctx, e.current); err != nil {
		t.Errorf("Delete after one 503: %v", err)
	}
	if n := len(e.fake.Requests("delete")); n != 2 {
		t.Errorf("%d delete attempts, want 2", n)
	}
}

func TestRateLimitSurfacesRetryAfter(t *testing.T) {
	e := newEnv(t)
	e.fake.RateLimit("create", 7, 5)
	_, err := e.driver.Create(context.Background(), provider.Key{User: "mailer"})
	pe := asProviderError(t, err)
	if pe.Status != http.StatusTooManyRequests || pe.RetryAfter != 7*time.Second || !pe.Temporary() || pe.Code != "Throttling" {
		t.Errorf("Create on 429: %v", err)
	}
}

func TestContextEndsAHangingCall(t *testing.T) {
	e := newEnv(t)
	e.fake.Hang("create", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.driver.Create(ctx, provider.Key{User: "mailer"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create with a hanging server: %v, want the deadline", err)
	}
	if pe := asProviderError(t, err); pe.Status != 0 || !pe.Temporary() {
		t.Errorf("error %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Create returned after %s", d)
	}
}

func TestTestWaitsForANewKeyToPropagate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.fake.DelayNewKeys(1)
	k, err := e.driver.Create(ctx, provider.Key{User: "mailer"})
	if err != nil {
		t.Fatal(err)
	}
	e.driver.KeyPropagation = 10 * time.Second
	if err := e.driver.Test(ctx, k); err != nil {
		t.Fatalf("Test of a key that STS refuses once: %v", err)
	}
	if n := len(e.fake.Requests("test")); n != 2 {
		t.Errorf("%d test calls, want 2", n)
	}

	k2, _ := e.driver.Create(ctx, provider.Key{User: "admin"})
	e.driver.KeyPropagation = 0
	err = e.driver.Test(ctx, k2)
	if pe := asProviderError(t, err); pe.Code != "InvalidClientTokenId" {
		t.Errorf("Test without propagation wait: %v", err)
	}
}

func TestNewChecksEndpoint(t *testing.T) {
	for _, tc := range []struct {
		ep   provider.Endpoint
		want string
	}{
		{provider.Endpoint{Region: "mars-1"}, "region"},
		{provider.Endpoint{Region: ""}, "region"},
		{provider.Endpoint{Region: region, BaseURL: "http://example.com"}, "base_url"},
		{provider.Endpoint{Region: region, BaseURL: "ftp://127.0.0.1"}, "base_url"},
	} {
		if _, err := ses.New(tc.ep); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want an error naming %s", tc.ep, err, tc.want)
		}
	}
	if _, err := ses.New(provider.Endpoint{Region: "us-east-2"}); err != nil {
		t.Errorf("New with AWS's endpoints: %v", err)
	}
	for region, want := range map[string]string{"eu-west-1": "https://iam.amazonaws.com", "us-gov-west-1": "https://iam.us-gov.amazonaws.com"} {
		if got, err := ses.DefaultBaseURL(region); err != nil || got != want {
			t.Errorf("DefaultBaseURL(%s) = %q, %v", region, got, err)
		}
	}
	if _, err := ses.DefaultBaseURL("nowhere-1"); err == nil {
		t.Error("DefaultBaseURL of no region")
	}
	if got := ses.DefaultSTSURL("ap-south-1"); got != "https://sts.ap-south-1.amazonaws.com" {
		t.Errorf("DefaultSTSURL = %q", got)
	}
}

func TestCheckKeys(t *testing.T) {
	for id, ok := range map[string]bool{
		"AKIAIOSFODNN7EXAMPLE":  true,
		"ASIAIOSFODNN7EXAMPLE":  true,
		"AKIAIOSFODNN7EXAMPL":   false,
		"AKIAIOSFODNN7EXAMPLEX": false,
		"AKIAiosfodnn7example":  false,
		"AIDAIOSFODNN7EXAMPLE":  false,
		"":                      false,
	} {
		if err := ses.CheckAccessKeyID(id); (err == nil) != ok {
			t.Errorf("CheckAccessKeyID(%q) = %v", id, err)
		} else if err != nil && strings.Contains(err.Error(), id) && id != "" {
			t.Errorf("error repeats the id: %v", err)
		}
	}
	for secret, ok := range map[string]bool{
		"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY":  true,
		"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY":  true,
		"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE":   false,
		"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYY": false,
		"wJalrXUtnFEMI-K7MDENG/bPxRfiCYEXAMPLEKEY":  false,
		"": false,
	} {
		if err := ses.CheckSecretAccessKey(secret); (err == nil) != ok {
			t.Errorf("CheckSecretAccessKey(len %d) = %v", len(secret), err)
		} else if err != nil && secret != "" && strings.Contains(err.Error(), secret) {
			t.Error("error repeats the secret")
		}
	}
}

// captureTransport records the requests it is given and answers none.
type captureTransport struct{ reqs []*http.Request }

func (c *captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.reqs = append(c.reqs, r)
	return nil, errors.New("no network in tests")
}

// TestAWSEndpointsAndNoAmbientCredentials: without a BaseURL, IAM goes to
// its global endpoint signed for us-east-1 and STS to the regional one;
// AWS environment variables are never read.
func TestAWSEndpointsAndNoAmbientCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENTXXXXX")
	t.Setenv("AWS_SECRET_ACCESS_KEY", strings.Repeat("E", 40))
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
	t.Setenv("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:1")
	t.Setenv("AWS_REGION", "ap-south-1")
	capture := &captureTransport{}
	auth := provider.Key{ID: "AKIAIOSFODNN7EXAMPLE", Secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
	d, err := ses.New(provider.Endpoint{Region: region, Auth: auth, HTTP: &http.Client{Transport: capture}})
	if err != nil {
		t.Fatal(err)
	}
	d.KeyPropagation = 0
	ctx := context.Background()
	if _, err := d.Create(ctx, provider.Key{User: "mailer"}); err == nil {
		t.Fatal("Create without network succeeded")
	} else if pe := asProviderError(t, err); pe.Status != 0 || !pe.Temporary() {
		t.Errorf("transport error: %v", err)
	}
	_ = d.Test(ctx, provider.Key{ID: "ASIAIOSFODNN7EXAMPLE", Secret: auth.Secret, User: "mailer"})

	var hosts []string
	for _, r := range capture.reqs {
		hosts = append(hosts, r.URL.Scheme+"://"+r.URL.Host)
	}
	if len(hosts) < 2 || hosts[0] != "https://iam.amazonaws.com" || hosts[len(hosts)-1] != "https://sts.eu-west-1.amazonaws.com" {
		t.Fatalf("requests went to %v", hosts)
	}
	iamAuth := capture.reqs[0].Header.Get("Authorization")
	if !strings.Contains(iamAuth, "Credential="+auth.ID+"/") || !strings.Contains(iamAuth, "/us-east-1/iam/aws4_request") {
		t.Errorf("IAM signed as %q", iamAuth)
	}
	stsAuth := capture.reqs[len(capture.reqs)-1].Header.Get("Authorization")
	if !strings.Contains(stsAuth, "Credential=ASIAIOSFODNN7EXAMPLE/") || !strings.Contains(stsAuth, "/eu-west-1/sts/aws4_request") {
		t.Errorf("STS signed as %q", stsAuth)
	}
}
