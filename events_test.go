package penguinmails

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// eventLog records the events a backend sends, as an edition of Vault with
// an event bus would receive them.
type eventLog struct {
	mu     sync.Mutex
	events []sentEvent
}

type sentEvent struct {
	typ  string
	meta map[string]string
}

func (l *eventLog) SendEvent(_ context.Context, typ logical.EventType, ev *logical.EventData) error {
	meta := map[string]string{}
	for k, v := range ev.Metadata.GetFields() {
		meta[k] = v.GetStringValue()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, sentEvent{typ: string(typ), meta: meta})
	return nil
}

// of returns the events of one type sent for one secret path.
func (l *eventLog) of(typ, path string) []sentEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []sentEvent
	for _, e := range l.events {
		if e.typ == typ && e.meta[logical.EventMetadataPath] == path {
			out = append(out, e)
		}
	}
	return out
}

// rotation-due is sent once when a secret enters its alert threshold, then
// rotate when the scheduler rotates it; rotate-fail when a rotation fails.
// No event carries secret material.
func TestEvents_RotationDueRotateAndFail(t *testing.T) {
	env := newTestEnv(t)
	in := smtpInput()
	in["auto_rotate"] = true
	env.ok(logical.UpdateOperation, "smtp/t1/m1", in)
	env.tick()

	env.clock.Advance(24 * day) // inside the 7-day alert threshold of a 30-day period
	env.tick()
	env.tick()
	due := env.events.of("penguinmails/rotation-due", "smtp/t1/m1")
	if len(due) != 1 || due[0].meta["next_rotation"] != "2026-12-01T09:00:00Z" {
		t.Fatalf("rotation-due events after entering the threshold and two ticks: %v; want one with next_rotation", due)
	}
	if n := len(env.events.of("penguinmails/rotate", "smtp/t1/m1")); n != 0 {
		t.Fatalf("%d rotate events before the period ended", n)
	}

	env.clock.Advance(7 * day)
	env.tick()
	rot := env.events.of("penguinmails/rotate", "smtp/t1/m1")
	if len(rot) != 1 || rot[0].meta["trigger"] != triggerTime || rot[0].meta["version"] != "2" {
		t.Fatalf("rotate events after the period: %v", rot)
	}

	// A rotation whose create step fails sends rotate-fail, and nothing
	// else changes.
	env.b.kinds["smtp"].create = func(context.Context, *backend, *secretEntry, *engineConfig, time.Time, map[string]interface{}) (interface{}, error) {
		return nil, errors.New("generator down")
	}
	if resp, err := env.do(logical.UpdateOperation, "smtp/t1/m1/rotate", nil); err == nil && (resp == nil || !resp.IsError()) {
		t.Fatal("a rotation whose create step fails answered success")
	}
	fail := env.events.of("penguinmails/rotate-fail", "smtp/t1/m1")
	if len(fail) != 1 || fail[0].meta["trigger"] != triggerManual {
		t.Fatalf("rotate-fail events: %v", fail)
	}

	password, _ := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)["password"].(string)
	env.events.mu.Lock()
	defer env.events.mu.Unlock()
	for _, e := range env.events.events {
		for k, v := range e.meta {
			if password == "" || strings.Contains(v, password) || strings.Contains(v, "s3cret-Password-1") {
				t.Fatalf("event %s carries a secret in %s", e.typ, k)
			}
		}
	}
}
