package dkimmilter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// gatedSigner answers "sig(msg)" for each message once the gate lets its
// call through, and records the batches and the calls in flight.
type gatedSigner struct {
	gate chan struct{}
	err  error

	mu          sync.Mutex
	batches     map[Key][]int // sizes, in call order
	inFlight    int
	perKey      map[Key]int
	maxInFlight int
	maxPerKey   int
}

func newGatedSigner() *gatedSigner {
	return &gatedSigner{gate: make(chan struct{}), batches: map[Key][]int{}, perKey: map[Key]int{}}
}

func (s *gatedSigner) SignBatch(_ context.Context, key Key, msgs [][]byte) ([]SignResult, error) {
	s.mu.Lock()
	s.batches[key] = append(s.batches[key], len(msgs))
	s.inFlight++
	s.perKey[key]++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	s.maxPerKey = max(s.maxPerKey, s.perKey[key])
	s.mu.Unlock()
	<-s.gate
	s.mu.Lock()
	s.inFlight--
	s.perKey[key]--
	s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	res := make([]SignResult, len(msgs))
	for i, m := range msgs {
		res[i].Signature = "sig(" + key.Domain + "," + string(m) + ")"
	}
	return res, nil
}

func (s *gatedSigner) state() (inFlight int, batches map[Key][]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := map[Key][]int{}
	for k, v := range s.batches {
		cp[k] = append([]int(nil), v...)
	}
	return s.inFlight, cp
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type signOutcome struct {
	msg, sig string
	err      error
}

func signAsync(b *Batcher, key Key, msg string, out chan<- signOutcome) {
	go func() {
		sig, err := b.Sign(context.Background(), key, []byte(msg))
		out <- signOutcome{msg, sig, err}
	}()
}

// TestBatcherCoalescesWhileInFlight: the first message leaves at once;
// the ten that arrive while it is in flight leave together in one request.
func TestBatcherCoalescesWhileInFlight(t *testing.T) {
	s := newGatedSigner()
	b := &Batcher{Signer: s, MaxItems: 100, PerKey: 1, MaxRequests: 4}
	key := Key{"tenant-1", "example.com"}
	out := make(chan signOutcome, 11)

	signAsync(b, key, "m0", out)
	waitFor(t, "the first request", func() bool { n, _ := s.state(); return n == 1 })
	for i := 1; i <= 10; i++ {
		signAsync(b, key, fmt.Sprintf("m%d", i), out)
	}
	waitFor(t, "ten queued messages", func() bool { return b.Queued(key) == 10 })
	close(s.gate)

	for i := 0; i < 11; i++ {
		o := <-out
		if o.err != nil || o.sig != "sig(example.com,"+o.msg+")" {
			t.Fatalf("%s: %q %v", o.msg, o.sig, o.err)
		}
	}
	if _, batches := s.state(); fmt.Sprint(batches[key]) != "[1 10]" {
		t.Fatalf("batch sizes %v, want [1 10]", batches[key])
	}
	if b.Queued(key) != 0 {
		t.Fatal("messages left in the queue")
	}
}

// TestBatcherBounds: 90 concurrent messages over three domains never make
// more than MaxRequests requests in flight, PerKey per domain, or batches
// above MaxItems, and each caller gets its own message's signature.
func TestBatcherBounds(t *testing.T) {
	s := newGatedSigner()
	b := &Batcher{Signer: s, MaxItems: 4, PerKey: 2, MaxRequests: 3}
	keys := []Key{{"t1", "a.example"}, {"t2", "b.example"}, {"t3", "c.example"}}
	out := make(chan signOutcome, 90)
	for i := 0; i < 30; i++ {
		for _, k := range keys {
			signAsync(b, k, fmt.Sprintf("%s-%d", k.Domain, i), out)
		}
	}
	queued := func() int { return b.Queued(keys[0]) + b.Queued(keys[1]) + b.Queued(keys[2]) }
	// Every message either in one of the 3 requests in flight, or queued.
	waitFor(t, "3 requests in flight and the rest queued", func() bool {
		n, batches := s.state()
		taken := 0
		for _, sizes := range batches {
			for _, size := range sizes {
				taken += size
			}
		}
		return n == 3 && taken+queued() == 90
	})
	close(s.gate)
	for i := 0; i < 90; i++ {
		o := <-out
		domain := o.msg[:len("a.example")]
		if o.err != nil || o.sig != "sig("+domain+","+o.msg+")" {
			t.Fatalf("%s: %q %v", o.msg, o.sig, o.err)
		}
	}
	_, batches := s.state()
	calls, items := 0, 0
	for _, k := range keys {
		for _, n := range batches[k] {
			if n > 4 {
				t.Errorf("%v: a batch of %d, above MaxItems 4", k, n)
			}
			calls++
			items += n
		}
	}
	if items != 90 || calls > 3+3*8 {
		t.Fatalf("%d items in %d requests (%v)", items, calls, batches)
	}
	if s.maxInFlight > 3 || s.maxPerKey > 2 {
		t.Fatalf("in flight: %d in all (max 3), %d per domain (max 2)", s.maxInFlight, s.maxPerKey)
	}
}

func TestBatcherMaxBytesSplits(t *testing.T) {
	s := newGatedSigner()
	close(s.gate)
	b := &Batcher{Signer: s, MaxItems: 100, MaxBytes: 10, PerKey: 1, MaxRequests: 1}
	key := Key{"t", "d.example"}
	// Hold the only request slot so that all four queue, then let go.
	b.init()
	b.global <- struct{}{}
	out := make(chan signOutcome, 4)
	for i, m := range []string{"aaaa", "bbbb", "cccc", "dddddddddddddddd"} {
		signAsync(b, key, m, out)
		waitFor(t, "queued in order", func() bool { return b.Queued(key) == i+1 })
	}
	<-b.global
	for i := 0; i < 4; i++ {
		if o := <-out; o.err != nil {
			t.Fatal(o.err)
		}
	}
	// 4+4 fit in 10 bytes; the third would not; the 16-byte one goes alone.
	if _, batches := s.state(); fmt.Sprint(batches[key]) != "[2 1 1]" {
		t.Fatalf("batch sizes %v, want [2 1 1]", batches[key])
	}
}

func TestBatcherRequestErrorReachesEveryCaller(t *testing.T) {
	s := newGatedSigner()
	s.err = errors.New("vault answered 503: sealed")
	close(s.gate)
	b := &Batcher{Signer: s, MaxItems: 10, PerKey: 1, MaxRequests: 1}
	out := make(chan signOutcome, 5)
	for i := 0; i < 5; i++ {
		signAsync(b, Key{"t", "d.example"}, "m", out)
	}
	for i := 0; i < 5; i++ {
		if o := <-out; o.err == nil || o.err.Error() != "vault answered 503: sealed" {
			t.Fatalf("caller %d: %v", i, o.err)
		}
	}
}

func TestBatcherCallerDeadline(t *testing.T) {
	s := newGatedSigner() // never opened: the request hangs
	b := &Batcher{Signer: s, MaxItems: 10, PerKey: 1, MaxRequests: 1}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Sign(ctx, Key{"t", "d.example"}, []byte("m")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	close(s.gate)
}

// Messages whose callers stopped waiting leave the queue: they are not
// sent to Vault for nobody, and they hold no memory.
func TestBatcherDropsMessagesWhoseCallerGaveUp(t *testing.T) {
	s := newGatedSigner()
	b := &Batcher{Signer: s, MaxItems: 100, PerKey: 1, MaxRequests: 4}
	key := Key{"tenant-1", "example.com"}
	out := make(chan signOutcome, 6)
	signAsync(b, key, "m0", out)
	waitFor(t, "the first request", func() bool { n, _ := s.state(); return n == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 5)
	for i := 1; i <= 5; i++ {
		go func() {
			_, err := b.Sign(ctx, key, []byte(fmt.Sprintf("late-%d", i)))
			gaveUp <- err
		}()
	}
	waitFor(t, "five queued", func() bool { return b.Queued(key) == 5 })
	cancel()
	for range 5 {
		if err := <-gaveUp; err != context.Canceled {
			t.Fatalf("a caller that gave up got %v", err)
		}
	}
	if n := b.Queued(key); n != 0 {
		t.Fatalf("%d messages of callers that gave up are still queued", n)
	}
	close(s.gate)
	if r := <-out; r.err != nil {
		t.Fatal(r.err)
	}
	waitFor(t, "the drainer to retire", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.queues[key] == nil })
	if _, batches := s.state(); len(batches[key]) != 1 {
		t.Fatalf("batches sent %v, want only the first", batches[key])
	}
}

type hangingSigner struct{}

func (hangingSigner) SignBatch(ctx context.Context, _ Key, _ [][]byte) ([]SignResult, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A batch request that never answers ends at the Batcher's own timeout,
// whatever client the Signer uses, so it cannot hold a request slot.
func TestBatcherBoundsARequestThatNeverAnswers(t *testing.T) {
	b := &Batcher{Signer: hangingSigner{}, MaxItems: 10, PerKey: 1, MaxRequests: 1, Timeout: 50 * time.Millisecond}
	for i := range 2 { // the second finds the one slot free again
		if _, err := b.Sign(context.Background(), Key{"t", "example.com"}, []byte("m")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("sign %d against a hanging signer: %v, want the deadline", i, err)
		}
	}
}
