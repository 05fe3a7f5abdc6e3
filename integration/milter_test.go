package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/hashicorp/vault/api"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimmilter"
)

// TestMilter_PostfixSignsThroughVault runs a private Postfix (Debian's
// package) whose smtpd calls penguinmails-milter, which signs through the
// engine in the real Vault. Mail goes to a go-smtp sink as Postfix's
// relayhost, and each delivered signature is checked by dkimpy (Debian's
// python3-dkim, an implementation independent of the engine's go-msgauth)
// against the TXT records the engine publishes at dkim/{tenant}/{domain}/dns.
//
// Three smtpd listeners each have their own milter: one against Vault, one
// against an address where no Vault listens that fails closed (451), and
// one like it that fails open (delivers unsigned).
func TestMilter_PostfixSignsThroughVault(t *testing.T) {
	installDeps(t, "postfix", "python3-dkim")
	l := client.Logical()

	// Keys of two tenants, active at once (as the other DKIM tests do): one
	// domain named in the milter's domains file, one it finds by owner.
	const mapped, lookedUp = "milter.example", "lookup.example"
	for path, tenant := range map[string]string{mapped: "tenant-milter", lookedUp: "tenant-milter-2"} {
		p := mount + "/dkim/" + tenant + "/" + path
		if _, err := l.Write(p, map[string]interface{}{"activation": "immediate"}); err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
		t.Cleanup(func() { _, _ = l.Delete(p) })
	}
	records := publishedRecords(t, l, mount+"/dkim/tenant-milter/"+mapped)
	for k, v := range publishedRecords(t, l, mount+"/dkim/tenant-milter-2/"+lookedUp) {
		records[k] = v
	}

	// The dkim-signer policy of docs/integrations.md, and a token for it in
	// the file Vault Agent would keep fresh.
	putSignerPolicy(t)
	work := worldReadableTempDir(t, "penguinmails-milter-") // Postfix's daemons run as user postfix
	tokenFile := filepath.Join(work, "token")
	firstToken := signerToken(t)
	writeFile(t, tokenFile, firstToken+"\n", 0o600)
	domainsFile := filepath.Join(work, "domains")
	writeFile(t, domainsFile, "# domain tenant\n"+mapped+" tenant-milter\n", 0o644)

	sink := startSink(t)
	ports, err := freePorts(7)
	if err != nil {
		t.Fatal(err)
	}
	smtpdPorts, milterPorts, deadVault := ports[0:3], ports[3:6], fmt.Sprintf("http://127.0.0.1:%d", ports[6])
	bin := milterBinary(t)
	milterLogs := []string{
		startMilter(t, bin, work, "signing", milterPorts[0], vaultAddr, tokenFile, domainsFile, "tempfail"),
		startMilter(t, bin, work, "closed", milterPorts[1], deadVault, tokenFile, domainsFile, "tempfail"),
		startMilter(t, bin, work, "open", milterPorts[2], deadVault, tokenFile, domainsFile, "accept"),
	}
	startPostfix(t, work, sink.port, smtpdPorts, milterPorts)

	body := "The milter test body.\r\nA second line.\r\n"
	t.Run("mapped domain is signed", func(t *testing.T) {
		msg := sendAndReceive(t, sink, smtpdPorts[0], "alice@"+mapped, "mapped", body)
		requireOneSignature(t, msg, mapped)
		// On top, above Postfix's own Received field (RFC 6376 5.6).
		if !strings.HasPrefix(msg, "DKIM-Signature: ") {
			t.Fatalf("the signature is not the first field:\n%s", msg)
		}
		dkimpyVerify(t, records, msg, true)
		// Not a verifier that accepts anything: a changed body fails.
		dkimpyVerify(t, records, strings.Replace(msg, "second line", "secont line", 1), false)
	})
	t.Run("owner lookup finds the tenant", func(t *testing.T) {
		msg := sendAndReceive(t, sink, smtpdPorts[0], "bob@"+lookedUp, "looked up", body)
		requireOneSignature(t, msg, lookedUp)
		dkimpyVerify(t, records, msg, true)
	})
	t.Run("unknown domain passes unsigned", func(t *testing.T) {
		msg := sendAndReceive(t, sink, smtpdPorts[0], "carol@unknown.example", "unknown", body)
		if strings.Contains(strings.ToLower(msg), "dkim-signature:") {
			t.Fatalf("a message from an unknown domain was signed:\n%s", msg)
		}
	})
	t.Run("token replaced by Agent is picked up", func(t *testing.T) {
		// Agent renews: a new token in the file, the old one revoked.
		writeFile(t, tokenFile, signerToken(t)+"\n", 0o600)
		if err := client.Auth().Token().RevokeTree(firstToken); err != nil {
			t.Fatal(err)
		}
		msg := sendAndReceive(t, sink, smtpdPorts[0], "alice@"+mapped, "after renewal", body)
		requireOneSignature(t, msg, mapped)
		dkimpyVerify(t, records, msg, true)
	})
	t.Run("concurrent messages are all signed", func(t *testing.T) {
		const n = 20
		before := signRequests(t, mapped)
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() { errs <- sendMail(smtpdPorts[0], "alice@"+mapped, fmt.Sprintf("burst %d", i), body) }()
		}
		for i := 0; i < n; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		var msgs []string
		for i := 0; i < n; i++ {
			msgs = append(msgs, sink.waitFor(t, fmt.Sprintf("burst %d", i)))
			requireOneSignature(t, msgs[i], mapped)
		}
		for i, ok := range dkimpyVerifyAll(t, records, msgs) {
			if !ok {
				t.Errorf("burst %d does not verify", i)
			}
		}
		// How many requests a burst takes depends on how the messages
		// overlap at the milter; TestMilter_BatcherAgainstVault shows the
		// coalescing with the real engine.
		t.Logf("%d messages sent at once took %d sign requests", n, signRequests(t, mapped)-before)
	})
	t.Run("vault unreachable: fail closed answers 451, fail open delivers unsigned", func(t *testing.T) {
		err := sendMail(smtpdPorts[1], "alice@"+mapped, "closed", body)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) {
			t.Fatalf("fail closed: %v, want 451 4.7.0", err)
		}
		msg := sendAndReceive(t, sink, smtpdPorts[2], "alice@"+mapped, "open", body)
		if strings.Contains(strings.ToLower(msg), "dkim-signature:") {
			t.Fatal("fail open delivered a signature without Vault")
		}
		if got := sink.subjects(); strings.Contains(got, "Subject: closed") {
			t.Fatalf("the message refused with 451 was delivered anyway: %s", got)
		}
	})

	// The milters log domains and reasons, never a token, address or body.
	for _, path := range milterLogs {
		logText, _ := os.ReadFile(path)
		for _, s := range []string{firstToken, "alice@", "bob@", "carol@", "milter test body"} {
			if bytes.Contains(logText, []byte(s)) {
				t.Errorf("%s contains %q", path, s)
			}
		}
	}
	if logText, _ := os.ReadFile(milterLogs[1]); !bytes.Contains(logText, []byte("deferring: signing failed (fail closed)")) {
		t.Errorf("the fail-closed milter did not log the failure:\n%s", logText)
	}
}

// TestMilter_BatcherAgainstVault: messages that arrive while a sign request
// is in flight leave together in one batch_input request to the real
// engine, and every signature in the batch answer verifies with dkimpy.
func TestMilter_BatcherAgainstVault(t *testing.T) {
	installDeps(t, "python3-dkim")
	const tenant, domain, n = "tenant-batch", "batch.example", 40
	path := mount + "/dkim/" + tenant + "/" + domain
	l := client.Logical()
	if _, err := l.Write(path, map[string]interface{}{"activation": "immediate"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })
	putSignerPolicy(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, signerToken(t), 0o600)

	vault := &dkimmilter.VaultClient{Addr: vaultAddr, Mount: mount, HTTP: &http.Client{Timeout: 30 * time.Second},
		Token: &dkimmilter.TokenFile{Path: tokenFile}}
	// The first request waits until the other messages have queued behind
	// it, so what the batcher does with them does not depend on timing.
	gated := &gatedSigner{next: vault, open: make(chan struct{})}
	b := &dkimmilter.Batcher{Signer: gated, MaxItems: 100, PerKey: 1, MaxRequests: 1}
	key := dkimmilter.Key{Tenant: tenant, Domain: domain}

	before := signRequests(t, domain)
	type result struct {
		i   int
		sig string
		err error
	}
	results := make(chan result, n)
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("From: a@%s\r\nTo: b@example.org\r\nSubject: batch %d\r\n\r\nBody %d.\r\n", domain, i, i)
	}
	sign := func(i int) {
		sig, err := b.Sign(context.Background(), key, []byte(msgs[i]))
		results <- result{i, sig, err}
	}
	go sign(0)
	if err := poll(10*time.Second, func() error { return gated.waiting() }); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		go sign(i)
	}
	if err := poll(10*time.Second, func() error {
		if q := b.Queued(key); q != n-1 {
			return fmt.Errorf("%d queued", q)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	close(gated.open)

	signed := make([]string, n)
	for range msgs {
		r := <-results
		if r.err != nil {
			t.Fatalf("message %d: %v", r.i, r.err)
		}
		signed[r.i] = r.sig + msgs[r.i]
	}
	if got := fmt.Sprint(gated.sizes()); got != fmt.Sprintf("[1 %d]", n-1) {
		t.Fatalf("batch sizes %s, want [1 %d]", got, n-1)
	}
	if got := signRequests(t, domain) - before; got != 2 {
		t.Fatalf("Vault's audit log shows %d sign requests for %d messages, want 2", got, n)
	}
	records := publishedRecords(t, l, path)
	for i, ok := range dkimpyVerifyAll(t, records, signed) {
		if !ok {
			t.Errorf("message %d of the batch does not verify", i)
		}
	}
}

// gatedSigner holds its first call until open is closed, and records the
// size of each batch.
type gatedSigner struct {
	next  dkimmilter.Signer
	open  chan struct{}
	mu    sync.Mutex
	batch []int
}

func (g *gatedSigner) SignBatch(ctx context.Context, key dkimmilter.Key, msgs [][]byte) ([]dkimmilter.SignResult, error) {
	g.mu.Lock()
	g.batch = append(g.batch, len(msgs))
	g.mu.Unlock()
	<-g.open
	return g.next.SignBatch(ctx, key, msgs)
}

func (g *gatedSigner) waiting() error {
	if len(g.sizes()) == 0 {
		return errors.New("no request yet")
	}
	return nil
}

func (g *gatedSigner) sizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.batch...)
}

const signerPolicy = `path "` + mount + `/dkim/+/+/sign" { capabilities = ["update"] }
path "` + mount + `/dkim-domains/+" { capabilities = ["read"] }`

// signRequests counts the sign requests for domain that Vault's audit log
// answered.
func signRequests(t *testing.T, domain string) int {
	t.Helper()
	n := 0
	for _, e := range responseEntries(t) {
		if strings.HasSuffix(e.Request.Path, "/"+domain+"/sign") {
			n++
		}
	}
	return n
}

func putSignerPolicy(t *testing.T) {
	t.Helper()
	if err := client.Sys().PutPolicy("dkim-signer-milter", signerPolicy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Sys().DeletePolicy("dkim-signer-milter") })
}

func signerToken(t *testing.T) string {
	t.Helper()
	s, err := client.Auth().Token().Create(&api.TokenCreateRequest{
		Policies: []string{"dkim-signer-milter"}, NoDefaultPolicy: true, TTL: "1h",
	})
	if err != nil {
		t.Fatal(err)
	}
	rememberSecret(s.Auth.ClientToken)
	return s.Auth.ClientToken
}

// worldReadableTempDir is a temporary directory that unprivileged daemons
// (Postfix's, sshd's AuthorizedKeysCommandUser) can traverse; t.TempDir's
// parents are 0700.
func worldReadableTempDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// milterBinary is MILTER_BINARY (make build's bin/penguinmails-milter, as
// scripts/integration.sh sets it), else the milter built now.
func milterBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MILTER_BINARY"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "penguinmails-milter")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/penguinmails-milter").CombinedOutput(); err != nil {
		t.Fatalf("building the milter: %v\n%s", err, out)
	}
	return bin
}

// startMilter runs the milter on port until the test ends; it returns the
// path of its log.
func startMilter(t *testing.T, bin, work, name string, port int, vault, tokenFile, domainsFile, onFailure string) string {
	t.Helper()
	logPath := filepath.Join(work, "milter-"+name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-listen", fmt.Sprintf("inet:127.0.0.1:%d", port),
		"-vault-addr", vault, "-token-file", tokenFile, "-domains", domainsFile,
		"-owner-lookup", "-on-failure", onFailure, "-timeout", "5s", "-log-level", "debug")
	cmd.Env = envFor(vault, "") // no VAULT_TOKEN: the file is the only token
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			t.Logf("--- %s:\n%s", logPath, tailFile(logPath, 30))
		}
	})
	if err := poll(10*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("milter %s does not listen: %v\n%s", name, err, tailFile(logPath, 20))
	}
	return logPath
}

// startPostfix writes a private Postfix instance into work/postfix (own
// queue and data directories, no chroot, no local delivery, everything
// relayed to the sink) with one smtpd per milter, and starts it.
func startPostfix(t *testing.T, work string, sinkPort int, smtpdPorts, milterPorts []int) {
	t.Helper()
	dir := filepath.Join(work, "postfix")
	for _, d := range []string{dir, filepath.Join(dir, "queue"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "main.cf"), postfixMainCf(dir, sinkPort, milterPorts[0]), 0o644)
	writeFile(t, filepath.Join(dir, "master.cf"), postfixMasterCf(smtpdPorts, milterPorts), 0o644)
	if err := os.Chown(filepath.Join(dir, "data"), postfixUID(t), -1); err != nil {
		t.Fatal(err)
	}
	postfix := func(args ...string) (string, error) {
		out, err := exec.Command("postfix", append([]string{"-c", dir}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := postfix("start"); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, tailFile(filepath.Join(dir, "maillog"), 30))
	}
	pidFile := filepath.Join(dir, "queue", "pid", "master.pid")
	t.Cleanup(func() {
		if out, err := postfix("stop"); err != nil {
			t.Logf("postfix stop: %v\n%s", err, out)
			_, _ = postfix("abort")
		}
		// stop only signals master: wait for it to be gone before the
		// directory is removed under it.
		_ = poll(30*time.Second, func() error {
			if masterRunning(pidFile) {
				return errors.New("postfix master still running")
			}
			return nil
		})
		if t.Failed() {
			t.Logf("--- postfix maillog:\n%s", tailFile(filepath.Join(dir, "maillog"), 40))
		}
	})
	if err := poll(20*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", smtpdPorts[0]))
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("postfix smtpd does not listen: %v\n%s", err, tailFile(filepath.Join(dir, "maillog"), 30))
	}
}

func postfixMainCf(dir string, sinkPort, milterPort int) string {
	return fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
meta_directory = /etc/postfix
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.milter.test
mydomain = milter.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:no local delivery here
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:%[2]d
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_milters = inet:127.0.0.1:%[3]d
non_smtpd_milters =
milter_default_action = tempfail
milter_protocol = 6
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
`, dir, sinkPort, milterPort)
}

// postfixMasterCf: the daemons an smtpd-to-relay path needs, none chrooted.
// The second and third smtpd use the fail-closed and fail-open milters.
func postfixMasterCf(smtpdPorts, milterPorts []int) string {
	var b strings.Builder
	for i, port := range smtpdPorts {
		fmt.Fprintf(&b, "127.0.0.1:%d inet n - n - - smtpd\n", port)
		if i > 0 {
			fmt.Fprintf(&b, "  -o smtpd_milters=inet:127.0.0.1:%d\n", milterPorts[i])
		}
	}
	b.WriteString(`pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`)
	return b.String()
}

func postfixUID(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("id", "-u", "postfix").Output()
	if err != nil {
		t.Fatalf("id -u postfix: %v", err)
	}
	uid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func masterRunning(pidFile string) bool {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	return err == nil && syscall.Kill(pid, 0) == nil
}

// sink is the relayhost: a go-smtp server that keeps what it receives.
type sink struct {
	port int
	mu   sync.Mutex
	msgs []string
}

func startSink(t *testing.T) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{port: ln.Addr().(*net.TCPAddr).Port}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain = "sink.milter.test"
	srv.AllowInsecureAuth = true
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// waitFor returns the first delivered message whose Subject is subject.
func (s *sink) waitFor(t *testing.T, subject string) string {
	t.Helper()
	var found string
	err := poll(60*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, m := range s.msgs {
			if strings.Contains(m, "\r\nSubject: "+subject+"\r\n") {
				found = m
				return nil
			}
		}
		return fmt.Errorf("no message with Subject %q among %d delivered", subject, len(s.msgs))
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func (s *sink) subjects() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var subs []string
	for _, m := range s.msgs {
		for _, line := range strings.Split(m, "\r\n") {
			if strings.HasPrefix(line, "Subject: ") {
				subs = append(subs, line)
			}
		}
	}
	return strings.Join(subs, "; ")
}

type sinkSession struct{ s *sink }

func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, string(data))
	ss.s.mu.Unlock()
	return nil
}

// sendMail submits one message to Postfix's smtpd on port.
func sendMail(port int, from, subject, body string) error {
	c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.milter.test"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt("dave@receiver.example", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	msg := "From: Sender <" + from + ">\r\nTo: dave@receiver.example\r\nSubject: " + subject +
		"\r\nDate: Tue, 01 Dec 2026 09:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") +
		"@milter.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func sendAndReceive(t *testing.T, s *sink, port int, from, subject, body string) string {
	t.Helper()
	if err := sendMail(port, from, subject, body); err != nil {
		t.Fatalf("sending %q: %v", subject, err)
	}
	return s.waitFor(t, subject)
}

// requireOneSignature checks that msg carries one DKIM-Signature, for d=.
func requireOneSignature(t *testing.T, msg, domain string) string {
	t.Helper()
	header, _, _ := strings.Cut(msg, "\r\n\r\n")
	var sigs []string
	unfolded := strings.NewReplacer("\r\n\t", "\t", "\r\n ", " ").Replace(header)
	for _, f := range strings.Split(unfolded, "\r\n") {
		if strings.HasPrefix(strings.ToLower(f), "dkim-signature:") {
			sigs = append(sigs, f)
		}
	}
	if len(sigs) != 1 || !strings.Contains(sigs[0], " d="+domain+";") {
		t.Fatalf("want one DKIM-Signature with d=%s, got %q in:\n%s", domain, sigs, header)
	}
	return sigs[0]
}

// dkimVerifyScript verifies each message file named after the records
// file with dkimpy and prints pass or fail for each, one a line; its DNS
// answers come from the records file, "name<TAB>TXT" lines.
const dkimVerifyScript = `
import sys, dkim
records = {}
for line in open(sys.argv[1], encoding="ascii"):
    name, txt = line.rstrip("\n").split("\t", 1)
    records[name] = txt.encode()
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    return records.get(n.rstrip("."))
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        print("pass" if dkim.verify(f.read(), dnsfunc=dnsfunc) else "fail")
`

// dkimpyVerify runs Debian's python3 with python3-dkim on msg and checks
// that verification passes (want true) or fails.
func dkimpyVerify(t *testing.T, records map[string]string, msg string, want bool) {
	t.Helper()
	if got := dkimpyVerifyAll(t, records, []string{msg})[0]; got != want {
		t.Fatalf("dkimpy verification %t, want %t, for:\n%s", got, want, msg)
	}
}

// dkimpyVerifyAll verifies msgs in one dkimpy run: true for each that passes.
func dkimpyVerifyAll(t *testing.T, records map[string]string, msgs []string) []bool {
	t.Helper()
	dir := t.TempDir()
	var lines strings.Builder
	for name, txt := range records {
		fmt.Fprintf(&lines, "%s\t%s\n", name, txt)
	}
	args := []string{"-c", dkimVerifyScript, filepath.Join(dir, "records")}
	writeFile(t, args[2], lines.String(), 0o644)
	for i, m := range msgs {
		args = append(args, filepath.Join(dir, fmt.Sprintf("msg-%d.eml", i)))
		writeFile(t, args[len(args)-1], m, 0o644)
	}
	// /usr/bin/python3: Debian's interpreter, where python3-dkim lives (a
	// python3 earlier in PATH may be another installation).
	out, err := exec.Command("/usr/bin/python3", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	results := strings.Fields(string(out))
	if len(results) != len(msgs) {
		t.Fatalf("dkimpy answered %d results for %d messages:\n%s", len(results), len(msgs), out)
	}
	passed := make([]bool, len(msgs))
	for i, r := range results {
		passed[i] = r == "pass"
	}
	return passed
}
