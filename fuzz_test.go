package penguinmails

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// The fuzz targets of the root package. `make fuzz` runs each for FUZZTIME;
// `make test-unit` runs their seed corpora (f.Add and testdata/fuzz).

// identifierOK is the documented identifier rule, written out without the
// regular expression that validateIdentifier uses.
func identifierOK(s string) bool {
	if len(s) < 1 || len(s) > 128 || strings.Contains(s, "..") {
		return false
	}
	for i, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// maxMessage bounds every refusal: a huge input must not make a huge message.
const maxMessage = 1024

func FuzzValidateIdentifier(f *testing.F) {
	for _, s := range []string{"tenant-1", "a", "..", "a..b", "-a", "A.b_c-d", strings.Repeat("x", 128), strings.Repeat("x", 129), "a/b", "ｔｅｎａｎｔ", "a\x00b", "a\nb", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := validateIdentifier("tenant", s)
		if (err == nil) != identifierOK(s) {
			t.Fatalf("validateIdentifier(%q) = %v, documented rule says ok=%v", s, err, identifierOK(s))
		}
		if err != nil && (!strings.Contains(err.Error(), "tenant") || len(err.Error()) > maxMessage) {
			t.Fatalf("refusal of %q must name the field and stay short: %q", s, err)
		}
	})
}

// FuzzCheckSecretSegments fuzzes the malformed-path check: a path it lets
// through has a tenant (and name) that follow the identifier rule, and a
// refusal names the segment and stays short.
func FuzzCheckSecretSegments(f *testing.F) {
	for _, s := range []string{"smtp/tenant-1/m1", "smtp/../x", "ssh/t/.hidden", "dkim/t/BANK.COM", "dkim/t/bank.com.", "dkim/t/xn--bcher-kva.example",
		"smtp/%2e%2e/m1", "ssh/" + strings.Repeat("t", 200) + "/k", "unknown/a/b", "smtp", "dkim/t/ｅxample.com/sign"} {
		f.Add(s)
	}
	b := newBackend(time.Now)
	f.Fuzz(func(t *testing.T, path string) {
		segs := strings.Split(path, "/")
		err := b.checkSecretSegments(segs)
		if err != nil {
			if len(err.Error()) > maxMessage {
				t.Fatalf("refusal of %q is %d bytes long", path, len(err.Error()))
			}
			if !strings.Contains(err.Error(), "tenant") && !strings.Contains(err.Error(), "name") && !strings.Contains(err.Error(), "domain") {
				t.Fatalf("refusal of %q names no segment: %q", path, err)
			}
			return
		}
		if b.kinds[segs[0]] != nil && len(segs) >= 2 && !identifierOK(segs[1]) {
			t.Fatalf("%q passed with tenant %q, which breaks the identifier rule", path, segs[1])
		}
	})
}

// fixedText is every text a request refusal is built from apart from field
// names, so that the fuzz target can tell a quoted value from template text.
func fixedText(fields map[string]*framework.FieldSchema) string {
	parts := []string{"unknown field(s) ", ": this path accepts ", "no fields", "invalid ", ": expected ", acceptedNames(fields)}
	for _, t := range []framework.FieldType{framework.TypeString, framework.TypeInt, framework.TypeBool, framework.TypeDurationSecond,
		framework.TypeSignedDurationSecond, framework.TypeCommaStringSlice, framework.TypeMap} {
		parts = append(parts, typeName(t))
	}
	return strings.Join(parts, "\n")
}

// stringLeaves collects the string values (not the keys) inside v.
func stringLeaves(v interface{}, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case []interface{}:
		for _, e := range x {
			stringLeaves(e, out)
		}
	case map[string]interface{}:
		for _, e := range x {
			stringLeaves(e, out)
		}
	case json.Number:
		*out = append(*out, x.String())
	}
}

// sdkAccepts reports whether the sdk's own field validation passes, which is
// what the engine's check must agree with (else the sdk's error, which quotes
// the value, would still be reached).
func sdkAccepts(fields map[string]*framework.FieldSchema, data map[string]interface{}) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	d := framework.FieldData{Raw: data, Schema: fields}
	return d.Validate() == nil
}

// FuzzCheckRequestData runs the request pre-validation over arbitrary JSON
// bodies against the schema of every path of the engine.
func FuzzCheckRequestData(f *testing.F) {
	for _, s := range []string{`{"password":["s3cret-value"]}`, `{"password":{"k":"s3cret-value"}}`, `{"port":"587"}`, `{"port":1e99}`,
		`{"auto_rotate":"maybe-not-really"}`, `{"rotation_period":"-5s"}`, `{"rotation_period":"2540400h"}`, `{"headers":[1,{"a":2}]}`,
		`{"version":"latest-version"}`, `{"unknown_field":"value-value"}`, `{"max_versions":-1}`, `{"port":587.5}`, `{}`} {
		f.Add(s)
	}
	b := newBackend(time.Now)
	paths := b.Backend.Paths
	f.Fuzz(func(t *testing.T, body string) {
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber() // as Vault decodes request bodies
		var data map[string]interface{}
		if dec.Decode(&data) != nil || data == nil {
			return
		}
		for _, p := range paths {
			checkAgainstPath(t, p, body, data)
		}
	})
}

// checkAgainstPath asserts the properties of one refusal or acceptance.
func checkAgainstPath(t *testing.T, p *framework.Path, body string, data map[string]interface{}) {
	t.Helper()
	err := checkRequestData(p.Fields, logical.UpdateOperation, data)
	if err == nil {
		if !sdkAccepts(p.Fields, data) {
			t.Fatalf("%s: pre-validation passed %s, but the sdk's own validation refuses it", p.Pattern, body)
		}
		return
	}
	msg := err.Error()
	if len(msg) > 4*maxMessage {
		t.Fatalf("%s: refusal is %d bytes long", p.Pattern, len(msg))
	}
	fixed := fixedText(p.Fields)
	var leaves []string
	stringLeaves(data, &leaves)
	for _, v := range leaves {
		if len(v) < 8 || strings.Contains(fixed, v) || keyContains(data, v) {
			continue // too short to tell, or also template text or a field name
		}
		if strings.Contains(msg, v) {
			t.Fatalf("%s: refusal %q quotes the value %q", p.Pattern, msg, v)
		}
	}
}

// keyContains reports whether any key of data (at any depth) contains s.
func keyContains(v interface{}, s string) bool {
	switch x := v.(type) {
	case []interface{}:
		for _, e := range x {
			if keyContains(e, s) {
				return true
			}
		}
	case map[string]interface{}:
		for k, e := range x {
			if strings.Contains(k, s) || keyContains(e, s) {
				return true
			}
		}
	}
	return false
}
