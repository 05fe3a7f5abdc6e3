// Package penguinmails is a Vault secrets engine that keeps the credentials of a
// multi-tenant email platform: SMTP logins, provider API keys, DKIM and SSH keys.
// Every secret is versioned, carries rotation metadata, and is rotated by hand,
// after an incident, or on schedule by the backend's PeriodicFunc.
package penguinmails

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's semantic version. The Makefile sets it at link time
// so that it matches the -version given to `vault plugin register`.
var Version = "v0.1.0-dev"

// operationPrefix names the OpenAPI operations of this engine.
const operationPrefix = "penguinmails"

// Factory is the logical.Factory that Vault calls once per mount.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(time.Now)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

// backend holds everything one mount needs. Nothing lives in package globals:
// the plugin process serves many mounts at once (ServeMultiplex).
type backend struct {
	*framework.Backend

	// clock is injected so that tests can move time; production uses time.Now.
	clock func() time.Time

	// locks serialises writers of the same secret (read-modify-write of one
	// storage entry); readers take no lock because one Get is atomic.
	locks []*locksutil.LockEntry

	// kinds are the secret types this engine serves, by path prefix.
	kinds map[string]*secretKind

	// worker runs background work (sweep, index rebuild, jobs); workMu keeps
	// its passes and periodic's from overlapping.
	worker worker
	workMu sync.Mutex
	// periodicStarted is set by Vault's first periodic call to this mount:
	// only then does background work include scheduled rotations.
	periodicStarted atomic.Bool
	// indexReady is set once the mount's index is known to exist.
	indexReady atomic.Bool
	// dayMarks caches the day buckets of the due index known to exist.
	dayMarks sync.Map
	// rebuildTenants caches the tenant list of the index rebuild's kind.
	rebuildTenants atomic.Value
	// jobTenantCache caches a planning job's tenant list, by job id.
	jobTenantCache sync.Map
	// storage is the mount's storage view (Setup).
	storage logical.Storage
	// uses counts reads for the threshold trigger (uses.go).
	uses useCounter
	// entries caches decoded secret entries, signers parsed DKIM keys
	// (cache.go).
	entries *entryCache
	signers *signerCache
	// testCrashAfter, set by tests only, stops a rotation after a step as if
	// the process had died there.
	testCrashAfter func(step string) error

	// cfgMu guards the cached engine configuration. cfgGen counts the
	// changes and invalidations of it, so that a load that raced with one
	// does not cache what it read.
	cfgMu sync.RWMutex
	// cfgWriteMu serialises config writes (read-modify-write of one entry).
	cfgWriteMu sync.Mutex
	cfg        *engineConfig
	cfgGen     uint64
}

func newBackend(clock func() time.Time) *backend {
	return newBackendOf(clock, smtpKind(), sshKind(), dkimKind(), apiKeyKind(), oauthKind())
}

// newBackendOf builds a backend that serves kinds. Production serves the
// types above; tests add a recording double of an outside system, which
// must be known before the paths and config settings are derived.
func newBackendOf(clock func() time.Time, kinds ...*secretKind) *backend {
	b := &backend{
		clock:   clock,
		locks:   locksutil.CreateLocks(),
		entries: newEntryCache(defaultCacheSize),
		signers: newSignerCache(),
	}
	b.kinds = map[string]*secretKind{}
	for _, k := range kinds {
		b.kinds[k.Name] = k
	}

	paths := []*framework.Path{pathRoot(b), pathConfig(b), pathRotateTenant(b), pathRotateBulk(b), pathRotationStatus(b), pathTenantRotationStatus(b)}
	paths = append(paths, pathRotateJobs(b)...)
	paths = append(paths, pathProviders(b)...)
	for _, k := range b.sortedKinds() {
		paths = append(paths, pathsForKind(b, k)...)
	}
	// Must stay last: it turns a malformed secret path into a 400 naming the
	// offending segment instead of an opaque "unsupported path".
	paths = append(paths, pathMalformed(b))

	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			// Everything under these prefixes is secret material or policy.
			SealWrapStorage: []string{configStoragePath, providersStoragePrefix, secretsStoragePrefix},
		},
		Paths:             paths,
		PeriodicFunc:      b.periodic,
		InitializeFunc:    b.initialize,
		Invalidate:        b.invalidate,
		Clean:             b.clean,
		WALRollback:       b.walRollback,
		WALRollbackMinAge: walRollbackMinAge,
		RunningVersion:    Version,
	}
	return b
}

// Setup keeps the mount's own storage view for background work started
// outside a periodic call (a read that reaches max_uses).
func (b *backend) Setup(ctx context.Context, conf *logical.BackendConfig) error {
	b.storage = conf.StorageView
	return b.Backend.Setup(ctx, conf)
}

// now returns the current time in UTC from the injected clock.
func (b *backend) now() time.Time { return b.clock().UTC() }

// invalidate drops cached state when another node changes it (performance
// standbys and secondaries receive storage invalidations).
func (b *backend) invalidate(_ context.Context, key string) {
	defer func() {
		if recover() != nil {
			b.Logger().Error("recovered from a panic in invalidate")
		}
	}()
	b.invalidateEntry(key)
	if key == configStoragePath {
		b.cfgMu.Lock()
		b.cfg = nil
		b.cfgGen++
		b.cfgMu.Unlock()
	}
}

// clean stops background work and empties the caches when the mount goes
// away, Vault seals, or this node steps down.
func (b *backend) clean(_ context.Context) {
	b.stopWorker()
	b.entries.clear()
	b.signers.clear()
}

const backendHelp = `
The penguinmails secrets engine keeps the credentials of a multi-tenant email
platform: SMTP logins, email-provider API keys, DKIM signing keys and SSH keys.

Secrets live at {type}/{tenant}/{name}. Each write or rotation creates a new
version; the engine keeps max_versions of them, records who created each one,
and tracks rotation (last_rotated, next_rotation, rotation_status). Rotation
happens by hand ({type}/{tenant}/{name}/rotate), after an incident (rotate/bulk
and rotate-tenant/{tenant} start background jobs, followed at rotate/jobs),
on schedule (rotation_period or rotation_schedule, for secrets with auto_rotate
set), or after max_uses reads. rotation/status answers what is overdue.

Defaults per type (rotation period, alert threshold, grace periods,
max_versions, password policy) are set at "config".
`
