package penguinmails

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// BenchmarkSMTPReadInProcess is the engine's own cost of one read (routing,
// one storage Get, decoding, the response map), without Vault's HTTP layer or
// the plugin's gRPC hop; integration/BenchmarkSecretRead measures the whole.
func BenchmarkSMTPReadInProcess(b *testing.B) {
	env := newTestEnv(&testing.T{})
	env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput())
	for i := 0; i < 4; i++ {
		env.ok(logical.UpdateOperation, "smtp/t1/m1/rotate", map[string]interface{}{"reason": "bench"})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := env.do(logical.ReadOperation, "smtp/t1/m1", nil); err != nil {
			b.Fatal(err)
		}
	}
}
