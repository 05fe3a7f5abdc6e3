package penguinmails

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// BenchmarkCachedRead compares a read served by the entry cache with one
// that reads and decodes storage (cache_size=0). In process the storage is
// a map: the gRPC round trip a real read also saves is not in these figures.
func BenchmarkCachedRead(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
	}{{"warm", defaultCacheSize}, {"cold", 0}} {
		b.Run(c.name, func(b *testing.B) {
			env := newTestEnv(&testing.T{})
			env.ok(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": c.size})
			env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput())
			for range 4 {
				env.ok(logical.UpdateOperation, "smtp/t1/m1/rotate", map[string]interface{}{"reason": "bench"})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := env.do(logical.ReadOperation, "smtp/t1/m1", nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCachedSign compares warm signs (cached entry and key) with cold
// ones (cache_size=0 and the parsed key dropped before each sign), and
// reports signatures per second of a batch of 100.
func BenchmarkCachedSign(b *testing.B) {
	for _, keyType := range []string{"rsa-2048", "ed25519"} {
		for _, warm := range []bool{true, false} {
			name := keyType + "/cold"
			if warm {
				name = keyType + "/warm"
			}
			b.Run(name, func(b *testing.B) {
				env := newImmediateDKIMEnv(&testing.T{})
				if !warm {
					env.ok(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": 0})
				}
				env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": keyType})
				in := map[string]interface{}{"message": b64(testMessage)}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if !warm {
						env.b.signers.clear()
					}
					if resp, err := env.do(logical.UpdateOperation, dkimPath+"/sign", in); err != nil || resp.IsError() {
						b.Fatal(err, resp)
					}
				}
			})
		}
	}
	b.Run("ed25519/batch100", func(b *testing.B) {
		env := newImmediateDKIMEnv(&testing.T{})
		env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
		items := make([]interface{}, 100)
		for i := range items {
			items[i] = map[string]interface{}{"message": b64(testMessage)}
		}
		in := map[string]interface{}{"batch_input": items}
		b.ResetTimer()
		for range b.N {
			if resp, err := env.do(logical.UpdateOperation, dkimPath+"/sign", in); err != nil || resp.IsError() {
				b.Fatal(err, resp)
			}
		}
		b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "sigs/s")
	})
}
