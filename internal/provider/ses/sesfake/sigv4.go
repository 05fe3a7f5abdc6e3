package sesfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file checks AWS Signature Version 4 on its own, without the SDK's
// signer, so a driver that signs wrongly is refused as AWS would refuse it.
// It follows "Create a signed AWS API request" and "Elements of an AWS API
// request signature" in the IAM User Guide:
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDateForm  = "20060102T150405Z"
	// maxSkew is how far a request's X-Amz-Date may be from the server's
	// clock; AWS refuses older or newer signatures.
	maxSkew = 15 * time.Minute
)

// sigHeader is the parsed Authorization header.
type sigHeader struct {
	KeyID         string
	Date          string // yyyymmdd
	Region        string
	Service       string
	SignedHeaders []string
	Signature     string
}

// scope is the credential scope the signature was made for.
func (h sigHeader) scope() string {
	return h.Date + "/" + h.Region + "/" + h.Service + "/aws4_request"
}

// parseAuthorization reads
// "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/iam/aws4_request,
// SignedHeaders=content-type;host;x-amz-date, Signature=hex".
func parseAuthorization(v string) (sigHeader, error) {
	var h sigHeader
	rest, ok := strings.CutPrefix(v, sigAlgorithm+" ")
	if !ok {
		return h, fmt.Errorf("authorization header must use %s", sigAlgorithm)
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return h, fmt.Errorf("malformed authorization header")
		}
		fields[k] = val
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 5 || cred[4] != "aws4_request" {
		return h, fmt.Errorf("credential must be keyid/date/region/service/aws4_request")
	}
	h.KeyID, h.Date, h.Region, h.Service = cred[0], cred[1], cred[2], cred[3]
	if fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return h, fmt.Errorf("authorization header needs SignedHeaders and Signature")
	}
	h.SignedHeaders = strings.Split(fields["SignedHeaders"], ";")
	h.Signature = fields["Signature"]
	return h, nil
}

// verifySignature recomputes the signature of r (whose body is body) with
// secret and compares it with the one in h.
func verifySignature(r *http.Request, body []byte, h sigHeader, secret string, now time.Time) error {
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(amzDateForm, amzDate)
	if err != nil {
		return fmt.Errorf("X-Amz-Date is missing or malformed")
	}
	if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return fmt.Errorf("signature expired: X-Amz-Date is more than %s from the server time", maxSkew)
	}
	if h.Date != amzDate[:8] {
		return fmt.Errorf("credential date does not match X-Amz-Date")
	}
	if !contains(h.SignedHeaders, "host") || !contains(h.SignedHeaders, "x-amz-date") {
		return fmt.Errorf("host and x-amz-date must be signed")
	}
	payloadHash := hashHex(body)
	if claimed := r.Header.Get("X-Amz-Content-Sha256"); claimed != "" && claimed != payloadHash {
		return fmt.Errorf("x-amz-content-sha256 does not match the body")
	}
	creq := canonicalRequest(r, h.SignedHeaders, payloadHash)
	sts := strings.Join([]string{sigAlgorithm, amzDate, h.scope(), hashHex([]byte(creq))}, "\n")
	key := signingKey(secret, h.Date, h.Region, h.Service)
	want := hex.EncodeToString(hmacSHA256(key, []byte(sts)))
	if !hmac.Equal([]byte(want), []byte(h.Signature)) {
		return fmt.Errorf("the request signature we calculated does not match the signature you provided")
	}
	return nil
}

// canonicalRequest is method, URI, query, headers, signed headers and the
// payload hash, each on its own line.
func canonicalRequest(r *http.Request, signed []string, payloadHash string) string {
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	var headers strings.Builder
	for _, name := range signed {
		headers.WriteString(name + ":" + headerValue(r, name) + "\n")
	}
	return strings.Join([]string{r.Method, uriEncodePath(path), canonicalQuery(r.URL.Query()),
		headers.String(), strings.Join(signed, ";"), payloadHash}, "\n")
}

// headerValue is the trimmed value of a signed header, with runs of spaces
// collapsed and repeated headers joined by commas. Go's server moves Host
// and Content-Length out of r.Header.
func headerValue(r *http.Request, name string) string {
	switch name {
	case "host":
		return r.Host
	case "content-length":
		return strconv.FormatInt(r.ContentLength, 10)
	}
	vals := r.Header.Values(name)
	for i, v := range vals {
		vals[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(vals, ",")
}

// canonicalQuery sorts parameters by name and encodes them as RFC 3986.
func canonicalQuery(q url.Values) string {
	var pairs []string
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, awsEscape(k)+"="+awsEscape(v))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

// uriEncodePath encodes each path segment again, as every service but S3
// expects (the path is already escaped once).
func uriEncodePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = awsEscape(s)
	}
	return strings.Join(segs, "/")
}

// awsEscape percent-encodes everything but A-Z a-z 0-9 - _ . ~.
func awsEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// signingKey derives kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date),
// region), service), "aws4_request").
func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(date))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte("aws4_request"))
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
