package migrate

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// fakeVault is an in-memory Vault with a KV v2 mount at secret/ and an
// engine at penguinmails/ that behaves as the engine does for what the
// migration relies on: it stores writes, shows derived public parts (DKIM
// p=, SSH fingerprint, computed here with crypto/x509 and x/crypto/ssh),
// stages DKIM keys until activate, and deletes.
type fakeVault struct {
	kv      map[string][]kvEntry // path below secret/penguinmails/
	engine  map[string]*engineSecret
	writes  []string // engine paths written, in order
	deletes []string
	// failWrite, when set, may refuse an engine write.
	failWrite func(path string, data map[string]interface{}) error
	// noEngine makes the engine's mount answer 404 everywhere.
	noEngine bool
	// tamper, when set, changes what a read of the engine shows.
	tamper func(path string, out map[string]interface{})
	// clock is Vault's time: a second later at each KV put and engine
	// write, so versions made later have later created_time.
	clock time.Time
}

type kvEntry struct {
	data      map[string]interface{}
	made      time.Time
	deleted   bool
	destroyed bool
}

type engineSecret struct {
	fields  map[string]interface{}
	pending map[string]interface{} // DKIM: the staged key's fields
	version int
	made    time.Time // the current version's creation
	// pendingMade is the staged key's creation; it reads as version+1.
	pendingMade time.Time
}

func newFake() *fakeVault {
	return &fakeVault{kv: map[string][]kvEntry{}, engine: map[string]*engineSecret{},
		clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (f *fakeVault) tick() time.Time {
	f.clock = f.clock.Add(time.Second)
	return f.clock
}

// put adds a KV version.
func (f *fakeVault) put(path string, data map[string]interface{}) {
	f.kv[path] = append(f.kv[path], kvEntry{data: data, made: f.tick().Add(123 * time.Millisecond)})
}

const kvMeta, kvData, enginePrefix = "secret/metadata/penguinmails/", "secret/data/penguinmails/", "penguinmails/"

func (f *fakeVault) List(_ context.Context, path string) ([]string, error) {
	rel, ok := strings.CutPrefix(path, kvMeta)
	if !ok {
		return nil, fmt.Errorf("fake: list of %s not supported", path)
	}
	set := map[string]bool{}
	for p := range f.kv {
		rest, ok := strings.CutPrefix(p, rel)
		if !ok || rest == "" {
			continue
		}
		if i := strings.Index(rest, "/"); i >= 0 {
			rest = rest[:i+1]
		}
		set[rest] = true
	}
	if len(set) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeVault) Read(_ context.Context, path string, query map[string][]string) (map[string]interface{}, error) {
	if rel, ok := strings.CutPrefix(path, kvMeta); ok {
		return f.kvMetadata(rel), nil
	}
	if rel, ok := strings.CutPrefix(path, kvData); ok {
		vs := f.kv[rel]
		n, _ := strconv.Atoi(query["version"][0])
		if n < 1 || n > len(vs) || vs[n-1].deleted || vs[n-1].destroyed {
			return nil, nil
		}
		return map[string]interface{}{"data": vs[n-1].data}, nil
	}
	if path == enginePrefix+"config" && !f.noEngine {
		return map[string]interface{}{"max_versions": json.Number("5")}, nil
	}
	s := f.engine[path]
	if s == nil {
		return nil, nil
	}
	// The engine's times have whole seconds.
	versions := map[string]interface{}{}
	if s.version > 0 {
		versions[strconv.Itoa(s.version)] = map[string]interface{}{"created_time": s.made.Format(time.RFC3339), "stage": "current"}
	}
	shown := s.fields
	if s.pending != nil {
		n := strconv.Itoa(s.version + 1)
		versions[n] = map[string]interface{}{"created_time": s.pendingMade.Format(time.RFC3339), "stage": "pending"}
		if v := query["version"]; len(v) == 1 && v[0] == n {
			shown = map[string]interface{}{"status": "pending"}
			for k, v := range s.pending {
				shown[k] = v
			}
		}
	}
	out := map[string]interface{}{"current_version": json.Number(strconv.Itoa(s.version)), "versions": versions}
	for k, v := range shown {
		out[k] = v
	}
	if f.tamper != nil {
		f.tamper(path, out)
	}
	return out, nil
}

func (f *fakeVault) kvMetadata(rel string) map[string]interface{} {
	vs, ok := f.kv[rel]
	if !ok {
		return nil
	}
	versions := map[string]interface{}{}
	for i, v := range vs {
		del := ""
		if v.deleted {
			del = time.Now().Add(-time.Hour).Format(time.RFC3339Nano)
		}
		versions[strconv.Itoa(i+1)] = map[string]interface{}{"deletion_time": del, "destroyed": v.destroyed,
			"created_time": v.made.Format(time.RFC3339Nano)}
	}
	return map[string]interface{}{"current_version": json.Number(strconv.Itoa(len(vs))), "versions": versions}
}

func (f *fakeVault) Write(_ context.Context, path string, data map[string]interface{}) (map[string]interface{}, error) {
	if f.failWrite != nil {
		if err := f.failWrite(path, data); err != nil {
			return nil, err
		}
	}
	f.writes = append(f.writes, path)
	made := f.tick()
	if secret, ok := strings.CutSuffix(path, "/activate"); ok {
		s := f.engine[secret]
		if s == nil || s.pending == nil {
			return nil, fmt.Errorf("400: %s has no key awaiting activation", secret)
		}
		s.fields, s.pending = s.pending, nil
		s.fields["status"] = "active"
		s.version++
		s.made = s.pendingMade
		return nil, nil
	}
	fields, err := engineView(path, data)
	if err != nil {
		return nil, err
	}
	s := f.engine[path]
	if s == nil {
		s = &engineSecret{}
		f.engine[path] = s
	}
	if _, given := data["webmail_url"]; !given && s.fields["webmail_url"] != nil {
		fields["webmail_url"] = s.fields["webmail_url"] // a setting not given is kept
	}
	if strings.HasPrefix(path, enginePrefix+"dkim/") {
		if fmt.Sprint(s.fields["public_key"]) != fields["public_key"] {
			if s.pending != nil && s.version > 0 {
				return nil, fmt.Errorf("409: version %d of %s awaits activation: activate it, or wait, before making another key", s.version+1, path)
			}
			// Staged, as with the engine's default delay activation; a
			// domain's first key is what a read shows, as pending.
			s.pending, s.pendingMade = fields, made
			if s.fields == nil {
				s.fields = map[string]interface{}{"status": "pending"}
				for k, v := range fields {
					s.fields[k] = v
				}
			}
		}
		return nil, nil
	}
	s.fields = fields
	s.version++
	s.made = made
	return nil, nil
}

func (f *fakeVault) Delete(_ context.Context, path string) error {
	f.deletes = append(f.deletes, path)
	delete(f.engine, path)
	return nil
}

// engineView is what a read shows after a write of data.
func engineView(path string, data map[string]interface{}) (map[string]interface{}, error) {
	out := map[string]interface{}{}
	for k, v := range data {
		out[k] = v
	}
	switch {
	case strings.HasPrefix(path, enginePrefix+"smtp/"):
		out["port"] = json.Number(fmt.Sprint(data["port"]))
		for _, k := range []string{"username", "host", "webmail_url"} {
			if v, ok := data[k].(string); ok {
				out[k] = strings.TrimSpace(v) // as the engine stores them
			}
		}
	case strings.HasPrefix(path, enginePrefix+"api-keys/"):
		for k, v := range data {
			if str, ok := v.(string); ok {
				out[k] = strings.TrimSpace(str) // the engine trims every field
			}
		}
		if s, ok := data["scopes"].(string); ok {
			var list []interface{}
			for _, p := range strings.Split(s, ",") {
				list = append(list, p)
			}
			out["scopes"] = list
		}
	case strings.HasPrefix(path, enginePrefix+"dkim/"):
		block, _ := pem.Decode([]byte(data["private_key"].(string)))
		if block == nil {
			return nil, fmt.Errorf("400: invalid private_key")
		}
		key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("400: invalid private_key")
		}
		der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
		out = map[string]interface{}{"public_key": base64.StdEncoding.EncodeToString(der), "selector": data["selector"]}
	case strings.HasPrefix(path, enginePrefix+"ssh/"):
		signer, err := ssh.ParsePrivateKey([]byte(data["private_key"].(string)))
		if err != nil {
			return nil, fmt.Errorf("400: invalid private_key")
		}
		out = map[string]interface{}{"fingerprint": ssh.FingerprintSHA256(signer.PublicKey())}
	}
	delete(out, "private_key")
	return out, nil
}
