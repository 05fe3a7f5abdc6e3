package integration

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
)

// benchSignedHeaders is given to Vault and to the in-process signer alike, so
// that both do the same work.
var benchSignedHeaders = []string{"From", "To", "Subject", "Date", "Message-ID"}

// BenchmarkDKIMSign measures signing throughput through Vault (HTTP, the
// plugin's gRPC hop, storage read, key parse, sign) next to signing the same
// message in-process with the same key exported from Vault, in one run.
func BenchmarkDKIMSign(b *testing.B) {
	for _, keyType := range []string{"rsa-2048", "ed25519"} {
		b.Run(keyType, func(b *testing.B) {
			path := mount + "/dkim/tenant-bench/" + keyType + ".example.com"
			l := client.Logical()
			if _, err := l.Write(path, map[string]interface{}{"key_type": keyType, "activation": "immediate"}); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _, _ = l.Delete(path) })
			opts := exportedSignOptions(b, path)
			records := publishedRecords(b, l, path)
			request := map[string]interface{}{
				"message": base64.StdEncoding.EncodeToString([]byte(dkimMessage)),
				"headers": strings.Join(benchSignedHeaders, ","),
			}

			// Both ways must give signatures that verify before they are timed.
			if err := dkimcheck.Verify(records, signWithVault(b, l, path, dkimMessage, map[string]interface{}{"headers": request["headers"]})); err != nil {
				b.Fatalf("Vault signature: %v", err)
			}
			if err := dkimcheck.Verify(records, signInProcess(b, opts)+dkimMessage); err != nil {
				b.Fatalf("in-process signature: %v", err)
			}

			b.Run("vault", func(b *testing.B) {
				runParallelRate(b, "signs/s", func() error {
					_, err := l.Write(path+"/sign", request)
					return err
				})
			})
			b.Run("in-process", func(b *testing.B) {
				runParallelRate(b, "signs/s", func() error {
					_, err := signHeader(opts)
					return err
				})
			})
		})
	}
}

// exportedSignOptions reads the key's PEM from {domain}/private and builds
// the signer options Vault uses: relaxed/relaxed, the same headers.
func exportedSignOptions(b *testing.B, path string) *dkim.SignOptions {
	b.Helper()
	s, err := client.Logical().Write(path+"/private", nil)
	if err != nil || s == nil {
		b.Fatalf("export: %v", err)
	}
	pemText := s.Data["private_key"].(string)
	rememberPrivateKey(pemText)
	key, err := dkimcheck.ParsePrivateKey(pemText)
	if err != nil {
		b.Fatal(err)
	}
	return &dkim.SignOptions{
		Domain:                 s.Data["domain"].(string),
		Selector:               s.Data["selector"].(string),
		Signer:                 key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             benchSignedHeaders,
	}
}

func signInProcess(b *testing.B, opts *dkim.SignOptions) string {
	b.Helper()
	h, err := signHeader(opts)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// signHeader signs dkimMessage with go-msgauth and returns the header field.
func signHeader(opts *dkim.SignOptions) (string, error) {
	s, err := dkim.NewSigner(opts)
	if err != nil {
		return "", err
	}
	if _, err := s.Write([]byte(dkimMessage)); err != nil {
		s.Close()
		return "", err
	}
	if err := s.Close(); err != nil {
		return "", err
	}
	return s.Signature(), nil
}
