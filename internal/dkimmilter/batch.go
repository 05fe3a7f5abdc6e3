package dkimmilter

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

const defaultBatchTimeout = 30 * time.Second

// Batcher coalesces concurrent sign requests into batch requests, as a
// database's group commit does: a message for a domain with fewer than
// PerKey requests in flight goes out at once (no added latency when mail
// is sparse); messages arriving while they are in flight queue up and leave
// together, up to MaxItems messages and MaxBytes bytes a request, as soon
// as a slot frees. MaxRequests bounds the requests in flight over all
// domains, so a burst cannot open unbounded connections to Vault.
type Batcher struct {
	Signer      Signer
	MaxItems    int // per request; the engine takes at most 1000
	MaxBytes    int // per request, summed over its messages
	PerKey      int // requests in flight per domain
	MaxRequests int // requests in flight in all
	// Timeout bounds one batch request (default 30s): the batch runs on a
	// context of its own, so it must not rely on the Signer's client.
	Timeout time.Duration

	once   sync.Once
	global chan struct{}
	mu     sync.Mutex
	queues map[Key]*keyQueue
}

type keyQueue struct {
	pending []*pendingSign
	running int
}

type pendingSign struct {
	msg  []byte
	done chan SignResult // buffered: the sender never blocks
}

func (b *Batcher) init() {
	b.once.Do(func() {
		b.global = make(chan struct{}, max(b.MaxRequests, 1))
		b.queues = map[Key]*keyQueue{}
	})
}

// Sign signs msg with key's active key; it waits for the batch that takes
// the message, or until ctx ends.
func (b *Batcher) Sign(ctx context.Context, key Key, msg []byte) (string, error) {
	b.init()
	p := &pendingSign{msg: msg, done: make(chan SignResult, 1)}
	b.mu.Lock()
	q := b.queues[key]
	if q == nil {
		q = &keyQueue{}
		b.queues[key] = q
	}
	q.pending = append(q.pending, p)
	if q.running < max(b.PerKey, 1) {
		q.running++
		go b.drain(key, q)
	}
	b.mu.Unlock()
	select {
	case r := <-p.done:
		return r.Signature, r.Err
	case <-ctx.Done():
		b.forget(key, p)
		return "", ctx.Err()
	}
}

// forget takes a message whose caller stopped waiting out of its queue, so
// that it is not sent to Vault for nobody. One already in a batch request
// is signed and its answer dropped.
func (b *Batcher) forget(key Key, p *pendingSign) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.queues[key]; q != nil {
		q.pending = slices.DeleteFunc(q.pending, func(x *pendingSign) bool { return x == p })
	}
}

// Queued is the number of messages for key waiting for a request.
func (b *Batcher) Queued(key Key) int {
	b.init()
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.queues[key]; q != nil {
		return len(q.pending)
	}
	return 0
}

// drain sends batches of key's queue until it is empty.
func (b *Batcher) drain(key Key, q *keyQueue) {
	for {
		b.global <- struct{}{}
		batch := b.take(key, q)
		if batch == nil {
			<-b.global
			return
		}
		b.send(key, batch)
		<-b.global
	}
}

// take removes the next batch from the queue, or retires this drainer
// (and forgets an idle domain) when nothing is left.
func (b *Batcher) take(key Key, q *keyQueue) []*pendingSign {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, size := 0, 0
	for n < len(q.pending) && (b.MaxItems <= 0 || n < b.MaxItems) {
		size += len(q.pending[n].msg)
		if n > 0 && b.MaxBytes > 0 && size > b.MaxBytes {
			break // one oversized message still goes alone: Vault says why
		}
		n++
	}
	if n == 0 {
		q.running--
		if q.running == 0 {
			delete(b.queues, key)
		}
		return nil
	}
	batch := q.pending[:n:n]
	q.pending = q.pending[n:]
	return batch
}

func (b *Batcher) send(key Key, batch []*pendingSign) {
	msgs := make([][]byte, len(batch))
	for i, p := range batch {
		msgs[i] = p.msg
	}
	// Not a caller's context: the batch serves several callers, each of
	// which stops waiting on its own deadline. Its own timeout bounds it.
	timeout := b.Timeout
	if timeout <= 0 {
		timeout = defaultBatchTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := b.Signer.SignBatch(ctx, key, msgs)
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("signer answered %d results for %d messages", len(res), len(batch))
	}
	for i, p := range batch {
		switch {
		case err != nil:
			p.done <- SignResult{Err: err}
		default:
			p.done <- res[i]
		}
	}
}
