package ses_test

import (
	"crypto/rand"
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses"
)

// AWS publishes the SMTP password algorithm and a Python script
// (smtp_credentials_generate.py) but no input/output pair:
// https://docs.aws.amazon.com/ses/latest/dg/smtp-credentials.html
// These vectors were computed with Python's hmac/hashlib following that
// script (date 11111111, service ses, terminal aws4_request, message
// SendRawEmail, version byte 0x04), for AWS's documented example secret key;
// pythonSMTPPassword below is the same computation, run live when python3
// is installed.
var smtpVectors = []struct{ secret, region, password string }{
	{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9"},
	{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "eu-west-1", "BMW5RDrXmmVs0lV7GpI4oLkHXpZ4stDsk6q91z1g38Pk"},
}

func TestSMTPPasswordVectors(t *testing.T) {
	for _, v := range smtpVectors {
		got, err := ses.SMTPPassword(v.secret, v.region)
		if err != nil || got != v.password {
			t.Errorf("SMTPPassword(example, %s) = %q, %v; want %q", v.region, got, err, v.password)
		}
	}
}

const pythonSMTPPassword = `
import sys, hmac, hashlib, base64
def sign(key, msg): return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()
for line in sys.stdin:
    secret, region = line.split()
    s = sign(("AWS4" + secret).encode("utf-8"), "11111111")
    for m in (region, "ses", "aws4_request", "SendRawEmail"):
        s = sign(s, m)
    print(base64.b64encode(bytes([0x04]) + s).decode())
`

// TestSMTPPasswordMatchesPython checks random keys in every region against
// an independent implementation.
func TestSMTPPasswordMatchesPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed; the fixed vectors still run")
	}
	var in strings.Builder
	var want []string
	for _, region := range ses.Regions {
		b := make([]byte, 30)
		_, _ = rand.Read(b)
		secret := base64.StdEncoding.EncodeToString(b)
		in.WriteString(secret + " " + region + "\n")
		pw, err := ses.SMTPPassword(secret, region)
		if err != nil {
			t.Fatalf("SMTPPassword in %s: %v", region, err)
		}
		want = append(want, pw)
	}
	cmd := exec.Command(python, "-c", pythonSMTPPassword)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	got := strings.Fields(string(out))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Go and Python disagree:\n go: %v\n py: %v", want, got)
	}
}

func TestSMTPPasswordRefusesBadInput(t *testing.T) {
	secret := smtpVectors[0].secret
	if _, err := ses.SMTPPassword(secret, "mars-1"); err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("unknown region: %v", err)
	}
	bad := secret[:39] + "-"
	if _, err := ses.SMTPPassword(bad, "us-east-1"); err == nil || strings.Contains(err.Error(), bad) {
		t.Errorf("malformed secret: %v", err)
	}
}
