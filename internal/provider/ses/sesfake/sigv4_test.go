package sesfake

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// AWS's documented Signature Version 4 example: IAM ListUsers, signed with
// AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY at
// 20150830T123600Z ("Signature Version 4 signing process" examples in the
// AWS General Reference; the same vector is in the SDKs' signer tests).
const (
	exampleSecret  = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	exampleAuth    = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
	exampleCreqSum = "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
)

var exampleTime = time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)

func exampleRequest(query string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://iam.amazonaws.com/?"+query, nil)
	r.Host = "iam.amazonaws.com"
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	r.Header.Set("X-Amz-Date", "20150830T123600Z")
	r.Header.Set("Authorization", exampleAuth)
	return r
}

func TestVerifiesAWSDocumentedExample(t *testing.T) {
	r := exampleRequest("Action=ListUsers&Version=2010-05-08")
	h, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	if h.KeyID != "AKIDEXAMPLE" || h.scope() != "20150830/us-east-1/iam/aws4_request" {
		t.Fatalf("parsed %+v", h)
	}
	if got := hashHex([]byte(canonicalRequest(r, h.SignedHeaders, hashHex(nil)))); got != exampleCreqSum {
		t.Errorf("canonical request hash %s, want AWS's %s", got, exampleCreqSum)
	}
	if err := verifySignature(r, nil, h, exampleSecret, exampleTime); err != nil {
		t.Errorf("AWS's own example refused: %v", err)
	}
}

func TestRefusesTamperedOrWrongSecretOrStale(t *testing.T) {
	h, _ := parseAuthorization(exampleAuth)
	if err := verifySignature(exampleRequest("Action=ListUsers&Version=2010-05-08"), nil, h,
		strings.Replace(exampleSecret, "+", "/", 1), exampleTime); err == nil {
		t.Error("a wrong secret verified")
	}
	if err := verifySignature(exampleRequest("Action=ListUsers&Version=2010-05-09"), nil, h, exampleSecret, exampleTime); err == nil {
		t.Error("a changed query verified")
	}
	if err := verifySignature(exampleRequest("Action=ListUsers&Version=2010-05-08"), []byte("x=1"), h, exampleSecret, exampleTime); err == nil {
		t.Error("a changed body verified")
	}
	if err := verifySignature(exampleRequest("Action=ListUsers&Version=2010-05-08"), nil, h, exampleSecret, exampleTime.Add(16*time.Minute)); err == nil {
		t.Error("a signature older than 15 minutes verified")
	}
}

func TestUnsignedRequestsAreRefused(t *testing.T) {
	s := New()
	defer s.Close()
	body := "Action=GetCallerIdentity&Version=2011-06-15"
	resp, err := http.Post(s.URL(), "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := new(strings.Builder)
	_, _ = io.Copy(buf, resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(buf.String(), "<Code>IncompleteSignature</Code>") ||
		!strings.Contains(buf.String(), "<ErrorResponse") {
		t.Errorf("unsigned request: %d %s", resp.StatusCode, buf)
	}

	k := s.AddKey("mailer")
	req, _ := http.NewRequest(http.MethodPost, s.URL(), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+k.ID+"/20260101/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	buf.Reset()
	_, _ = io.Copy(buf, resp2.Body)
	if resp2.StatusCode != http.StatusForbidden || !strings.Contains(buf.String(), "<Code>SignatureDoesNotMatch</Code>") {
		t.Errorf("badly signed request: %d %s", resp2.StatusCode, buf)
	}
}
