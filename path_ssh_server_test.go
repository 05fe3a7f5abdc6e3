package penguinmails

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"golang.org/x/crypto/ssh"
)

// startSSHServer runs an SSH server on loopback whose only accepted client
// keys are the ones authorized() returns at the moment a client connects, as
// a server syncing its authorized_keys file from the plugin would. It returns
// the address and the host key to pin.
func startSSHServer(t *testing.T, authorized func() ([]ssh.PublicKey, error)) (string, ssh.PublicKey) {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, offered ssh.PublicKey) (*ssh.Permissions, error) {
			keys, err := authorized()
			if err != nil {
				return nil, err
			}
			for _, k := range keys {
				if bytes.Equal(k.Marshal(), offered.Marshal()) {
					return nil, nil
				}
			}
			return nil, errors.New("key not in authorized_keys")
		},
	}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			go serveSSHConn(conn, cfg)
		}
	}()
	return ln.Addr().String(), hostKey.PublicKey()
}

// serveSSHConn completes the handshake (authentication is all the test
// needs), refuses channels, and returns when the client hangs up.
func serveSSHConn(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for ch := range chans {
		ch.Reject(ssh.Prohibited, "authentication test server")
	}
}

// authorizedKeysOf reads the plugin's authorized_keys text for path and parses
// it line by line, as sshd would read the file.
func authorizedKeysOf(b *backend, storage logical.Storage, path string) func() ([]ssh.PublicKey, error) {
	return func() ([]ssh.PublicKey, error) {
		resp, err := b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.ReadOperation, Path: path + "/authorized_keys", Storage: storage,
		})
		if err != nil || resp == nil || resp.IsError() {
			return nil, errors.New("reading authorized_keys failed")
		}
		rest := []byte(resp.Data["authorized_keys"].(string))
		var keys []ssh.PublicKey
		for len(bytes.TrimSpace(rest)) > 0 {
			k, _, _, next, err := ssh.ParseAuthorizedKey(rest)
			if err != nil {
				return nil, err
			}
			keys, rest = append(keys, k), next
		}
		return keys, nil
	}
}

// canLogIn reports whether a client holding signer authenticates.
func canLogIn(addr string, hostKey ssh.PublicKey, signer ssh.Signer) bool {
	client, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            "tenant-1",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return false
	}
	client.Close()
	return true
}

// downloadSigner downloads the current private key and loads it as a client
// key.
func (env *testEnv) downloadSigner(path string) ssh.Signer {
	env.t.Helper()
	signer, err := ssh.ParsePrivateKey([]byte(env.download(path, "")["private_key"].(string)))
	if err != nil {
		env.t.Fatalf("downloaded key does not load: %v", err)
	}
	return signer
}

func TestSSH_ServerAcceptsKeysOnlyWhileValid(t *testing.T) {
	env := newTestEnv(t)
	addr, hostKey := startSSHServer(t, authorizedKeysOf(env.b, env.storage, sshPath))
	expect := func(step string, want map[string]bool, signers map[string]ssh.Signer) {
		t.Helper()
		for name, s := range signers {
			if got := canLogIn(addr, hostKey, s); got != want[name] {
				t.Errorf("%s: client with %s key logged in = %v, want %v", step, name, got, want[name])
			}
		}
	}

	env.ok(logical.UpdateOperation, sshPath, nil)
	first := env.downloadSigner(sshPath)
	_, strangerPriv, _ := ed25519.GenerateKey(nil)
	stranger, _ := ssh.NewSignerFromKey(strangerPriv)
	expect("after create", map[string]bool{"v1": true}, map[string]ssh.Signer{"v1": first, "stranger": stranger})

	env.clock.Advance(time.Hour)
	env.ok(logical.UpdateOperation, sshPath+"/rotate", map[string]interface{}{"reason": "test"})
	second := env.downloadSigner(sshPath)
	both := map[string]ssh.Signer{"v1": first, "v2": second}
	expect("right after rotate", map[string]bool{"v1": true, "v2": true}, both)

	env.clock.Advance(24*time.Hour - time.Second)
	expect("one second before grace ends", map[string]bool{"v1": true, "v2": true}, both)

	env.clock.Advance(time.Second)
	expect("when grace ends", map[string]bool{"v2": true}, both)
	env.tick() // persisted by the scheduler: the same answer
	expect("after the scheduler ran", map[string]bool{"v2": true}, both)

	env.clock.Advance(time.Hour)
	env.ok(logical.UpdateOperation, sshPath+"/rotate", map[string]interface{}{"reason": "test"})
	third := env.downloadSigner(sshPath)
	all := map[string]ssh.Signer{"v1": first, "v2": second, "v3": third}
	expect("second rotate, v2 in grace", map[string]bool{"v2": true, "v3": true}, all)

	env.ok(logical.UpdateOperation, sshPath+"/revoke", map[string]interface{}{"reason": "compromised"})
	expect("after revoke", map[string]bool{}, all)

	env.ok(logical.UpdateOperation, sshPath+"/rotate", map[string]interface{}{"reason": "after revoke"})
	fourth := env.downloadSigner(sshPath)
	all["v4"] = fourth
	expect("rotate after revoke", map[string]bool{"v4": true}, all)
}
