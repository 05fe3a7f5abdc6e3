package ses_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses"
)

var _ provider.Finder = (*ses.Driver)(nil)

func TestFindReturnsTheOrphanOfTheUser(t *testing.T) {
	e := newEnv(t)
	since := time.Now().Add(-time.Minute)
	e.fake.AddKeyAt("mailer", since.Add(-time.Hour)) // older than the rotation: not its key
	orphan := e.fake.AddKeyAt("mailer", since.Add(time.Second))
	e.fake.AddUser("other")
	e.fake.AddKeyAt("other", since.Add(time.Second)) // another user's key

	id, ok, err := e.driver.Find(context.Background(), provider.Key{User: "mailer", Name: "ignored"}, since, []string{e.current.ID})
	if err != nil || !ok || id != orphan.ID {
		t.Fatalf("Find = %q, %v, %v; want %q", id, ok, err, orphan.ID)
	}
	list := onlyRequest(t, e.fake, "list")
	assertSigned(t, list, e.admin.ID, "us-east-1", "iam")
	assertForm(t, form(t, list), map[string]string{"Action": "ListAccessKeys", "Version": "2010-05-08", "UserName": "mailer"})
	if n := len(e.fake.Requests("")); n != 1 {
		t.Errorf("%d requests, want the one list", n)
	}
}

// IAM records CreateDate to the second: a key made in the same second as
// since, but before it by a fraction, is a candidate.
func TestFindCutsSinceToTheSecond(t *testing.T) {
	e := newEnv(t)
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	sameSecond := e.fake.AddKeyAt("mailer", at)
	e.fake.AddKeyAt("mailer", at.Add(-time.Second))

	id, ok, err := e.driver.Find(context.Background(), provider.Key{User: "mailer"}, at.Add(900*time.Millisecond), []string{e.current.ID})
	if err != nil || !ok || id != sameSecond.ID {
		t.Fatalf("Find = %q, %v, %v; want the key of the same second %q", id, ok, err, sameSecond.ID)
	}
}

func TestFindIgnoresHeldKeysAndNoneIsNotOK(t *testing.T) {
	e := newEnv(t)
	since := time.Now().Add(-time.Minute)
	made := e.fake.AddKeyAt("mailer", since.Add(time.Second))
	id, ok, err := e.driver.Find(context.Background(), provider.Key{User: "mailer"}, since, []string{e.current.ID, made.ID})
	if err != nil || ok || id != "" {
		t.Fatalf("Find with every new key held = %q, %v, %v; want nothing", id, ok, err)
	}
	// Keys made before since are no candidates, held or not.
	id, ok, err = e.driver.Find(context.Background(), provider.Key{User: "mailer"}, time.Now().Add(time.Hour), nil)
	if err != nil || ok || id != "" {
		t.Fatalf("Find of keys made later = %q, %v, %v; want nothing", id, ok, err)
	}
}

func TestFindTwoCandidatesIsAnError(t *testing.T) {
	e := newEnv(t)
	since := time.Now().Add(-time.Minute)
	a, b := e.fake.AddKeyAt("mailer", since), e.fake.AddKeyAt("mailer", since.Add(time.Second))
	before := e.fake.Live()

	id, ok, err := e.driver.Find(context.Background(), provider.Key{User: "mailer"}, since, []string{e.current.ID})
	if err == nil || ok || id != "" {
		t.Fatalf("Find = %q, %v, %v; want an error", id, ok, err)
	}
	pe := asProviderError(t, err)
	if pe.Op != "find key" || pe.Temporary() {
		t.Errorf("err %v", err)
	}
	for _, want := range []string{a.ID, b.ID, `"mailer"`, "by hand"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if len(e.fake.Requests("delete")) != 0 || !slices.Equal(e.fake.Live(), before) {
		t.Error("Find changed the account")
	}
}

func TestFindRequiresAUser(t *testing.T) {
	e := newEnv(t)
	_, ok, err := e.driver.Find(context.Background(), provider.Key{Name: "x"}, time.Time{}, nil)
	if pe := asProviderError(t, err); ok || pe.Op != "find key" || !strings.Contains(err.Error(), "IAM user") {
		t.Errorf("ok %v, err %v", ok, err)
	}
	if n := len(e.fake.Requests("")); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// The driver follows IsTruncated and Marker: a user with more keys than one
// page (IAM's default MaxItems is 100) is listed to the end.
func TestFindReadsEveryPage(t *testing.T) {
	e := newEnv(t)
	since := time.Now().Add(-time.Minute)
	held := []string{e.current.ID}
	for range 120 {
		held = append(held, e.fake.AddKeyAt("mailer", since).ID)
	}
	orphan := e.fake.AddKeyAt("mailer", since)
	id, ok, err := e.driver.Find(context.Background(), provider.Key{User: "mailer"}, since, held)
	if err != nil || !ok || id != orphan.ID {
		t.Fatalf("Find = %q, %v, %v; want %q", id, ok, err, orphan.ID)
	}
	// Pages asked, by Marker: the SDK may retry a call after a transport
	// hiccup, so requests are counted by the page they ask for.
	pages := map[string]bool{}
	for _, l := range e.fake.Requests("list") {
		f := form(t, l)
		if f.Get("UserName") != "mailer" {
			t.Errorf("listed %v", f)
		}
		pages[f.Get("Marker")] = true
	}
	if len(pages) != 2 || !pages[""] {
		t.Errorf("pages asked by Marker %v, want the first and the one its Marker names", pages)
	}
}

func TestFindListingErrorsSurfaceWithoutSecrets(t *testing.T) {
	e := newEnv(t)
	e.fake.SetErrorMessage("echo " + e.admin.Secret)
	e.fake.Fail("list", http.StatusInternalServerError, 2) // the call and the SDK's one retry
	_, ok, err500 := e.driver.Find(context.Background(), provider.Key{User: "mailer"}, time.Time{}, nil)
	if pe := asProviderError(t, err500); ok || pe.Status != 500 || !pe.Temporary() || pe.Op != "find key" {
		t.Errorf("500: ok %v, err %v", ok, err500)
	}

	forged := e.admin
	forged.Secret = strings.Repeat("F", 40)
	_, ok, errSig := e.newDriver(t, forged).Find(context.Background(), provider.Key{User: "mailer"}, time.Time{}, nil)
	pe := asProviderError(t, errSig)
	if ok || pe.Status != http.StatusForbidden || pe.Code != "SignatureDoesNotMatch" || pe.Temporary() {
		t.Errorf("wrong secret: ok %v, err %v", ok, errSig)
	}
	_, ok, errUser := e.driver.Find(context.Background(), provider.Key{User: "nobody"}, time.Time{}, nil)
	if pe := asProviderError(t, errUser); ok || pe.Status != http.StatusNotFound || pe.Code != "NoSuchEntity" {
		t.Errorf("unknown user: ok %v, err %v", ok, errUser)
	}
	for _, err := range []error{err500, errSig, errUser} {
		for _, s := range []string{e.admin.Secret, forged.Secret, "echo "} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q carries a secret or the answer's message", err)
			}
		}
	}
}
