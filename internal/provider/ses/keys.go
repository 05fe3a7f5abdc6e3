package ses

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
)

// Access key ids are 20 characters: AKIA (a long-term IAM user key) or
// ASIA (temporary STS credentials) and 16 upper-case letters and digits,
// like AWS's documented example AKIAIOSFODNN7EXAMPLE. See "Unique
// identifiers" in the IAM User Guide
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-unique-ids)
// and STS GetAccessKeyInfo
// (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetAccessKeyInfo.html).
// Secret access keys are 40 characters of the base64 alphabet, like the
// documented example wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY.
var (
	accessKeyIDRE = regexp.MustCompile(`^(AKIA|ASIA)[A-Z0-9]{16}$`)
	secretKeyRE   = regexp.MustCompile(`^[A-Za-z0-9+/]{40}$`)
)

// CheckAccessKeyID accepts an AWS access key id (AKIA or ASIA and 16
// upper-case letters or digits). The error never repeats the id.
func CheckAccessKeyID(id string) error {
	if !accessKeyIDRE.MatchString(id) {
		return errors.New("must be an AWS access key id: AKIA or ASIA followed by 16 upper-case letters or digits (20 characters)")
	}
	return nil
}

// CheckSecretAccessKey accepts an AWS secret access key (40 characters of
// A-Z a-z 0-9 + /). The error never repeats the key.
func CheckSecretAccessKey(secret string) error {
	if !secretKeyRE.MatchString(secret) {
		return errors.New("must be an AWS secret access key: 40 characters of A-Z, a-z, 0-9, + and /")
	}
	return nil
}

// SMTPPassword derives the SES SMTP password of a secret access key for
// region, with AWS's published algorithm (signature version 4 keys, in use
// since 2019): HMAC-SHA256 chained over "AWS4"+secret, the date 11111111,
// the region, "ses", "aws4_request" and "SendRawEmail", prefixed with the
// version byte 0x04 and base64-encoded. See "Obtaining Amazon SES SMTP
// credentials", https://docs.aws.amazon.com/ses/latest/dg/smtp-credentials.html,
// and its smtp_credentials_generate.py,
// https://docs.aws.amazon.com/ses/latest/dg/ses_example_ses_Scenario_GenerateSmtpCredentials_section.html.
// The SMTP user name is the access key id.
func SMTPPassword(secretAccessKey, region string) (string, error) {
	if !slices.Contains(Regions, region) {
		return "", fmt.Errorf("region %q is not an SES region", region)
	}
	if err := CheckSecretAccessKey(secretAccessKey); err != nil {
		return "", fmt.Errorf("secret access key %v", err)
	}
	const (
		date     = "11111111"
		service  = "ses"
		terminal = "aws4_request"
		message  = "SendRawEmail"
		version  = 0x04
	)
	k := []byte("AWS4" + secretAccessKey)
	for _, part := range []string{date, region, service, terminal, message} {
		k = hmacSHA256(k, part)
	}
	return base64.StdEncoding.EncodeToString(append([]byte{version}, k...)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
