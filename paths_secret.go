package penguinmails

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Path segments captured for every secret. They match any segment so that a
// bad value reaches validateIdentifier and gets a 400 that names the rule.
const (
	tenantSegment = `(?P<tenant>[^/]+)`
	nameSegment   = `(?P<name>[^/]+)`
)

func tenantField() *framework.FieldSchema {
	return &framework.FieldSchema{Type: framework.TypeString, Required: true,
		Description: "Tenant id. It " + identifierRule + "."}
}

func nameField(k *secretKind) *framework.FieldSchema {
	rule := "It " + identifierRule + "."
	if k.nameRule != "" {
		rule = k.nameRule
	}
	return &framework.FieldSchema{Type: framework.TypeString, Required: true,
		Description: "Name of the " + k.Title + " within the tenant. " + rule}
}

// secretRef is the validated {type}/{tenant}/{name} of a request.
type secretRef struct {
	kind   *secretKind
	tenant string
	name   string
}

func (r secretRef) key() string  { return secretStorageKey(r.kind.Name, r.tenant, r.name) }
func (r secretRef) path() string { return r.kind.Name + "/" + r.tenant + "/" + r.name }

func refFrom(k *secretKind, d *framework.FieldData) (secretRef, error) {
	ref := secretRef{kind: k, tenant: d.Get("tenant").(string)}
	if err := validateIdentifier("tenant", ref.tenant); err != nil {
		return ref, err
	}
	ref.name = d.Get("name").(string)
	return ref, k.checkName(ref.tenant, ref.name)
}

// writeFunc applies a create or update to e. On create e has no versions yet
// and the function must add the first one. It returns input errors for bad
// fields and must not touch e before all input is validated.
type writeFunc func(ctx context.Context, b *backend, req *logical.Request, d *framework.FieldData, e *secretEntry, cfg *engineConfig, now time.Time) error

// viewFunc renders a version for a read. withSecrets is false for write
// responses, which never echo secret material.
type viewFunc func(e *secretEntry, v *secretVersion, withSecrets bool) (map[string]interface{}, error)

// commonSecretFields are accepted by every type's {tenant}/{name} path.
func commonSecretFields(k *secretKind) map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"tenant": tenantField(),
		"name":   nameField(k),
		"version": {Type: framework.TypeInt, Query: true,
			Description: "On read: the version to return. 0 or unset means the current version."},
		"rotation_period": {Type: framework.TypeDurationSecond,
			Description: "This secret's rotation period, at most 3650d (10 years); 0 or unset uses the type default from config."},
		"rotation_schedule": {Type: framework.TypeString,
			Description: "A 5-field cron expression in UTC (minute hour day-of-month month day-of-week), for example \"0 3 * * 1\": " +
				"next_rotation is the first match after last_rotated. It replaces rotation_period; empty removes it."},
		"auto_rotate": {Type: framework.TypeBool,
			Description: "Rotate automatically when next_rotation passes (checked every minute on the active node). Default false."},
		"disable_automated_rotation": {Type: framework.TypeBool,
			Description: "Vault's name for the opposite of auto_rotate: true stops automatic rotation, false starts it. Give one of the two."},
		"max_uses": {Type: framework.TypeInt,
			Description: fmt.Sprintf("Rotate once the secret has been read (or used to sign) this many times since its last rotation "+
				"(the threshold trigger); 0 turns it off. At most %d.", maxMaxUses)},
		"max_versions": {Type: framework.TypeInt,
			Description: fmt.Sprintf("Versions kept for this secret; 0 or unset uses config max_versions. At most %d.", maxVersionsLimit)},
	}
}

// secretPath builds a type's {tenant}/{name} path: create, read, update,
// delete. Reading, deleting and the bookkeeping of writes are shared; the
// type supplies its fields, its write function and its view.
func secretPath(b *backend, k *secretKind, fields map[string]*framework.FieldSchema, write writeFunc, view viewFunc, synopsis, description string) *framework.Path {
	all := commonSecretFields(k)
	for name, f := range fields {
		all[name] = f
	}
	writeOp := &framework.PathOperation{
		Callback:                    b.handle(b.secretWriter(k, write, view)),
		Summary:                     "Create or update a " + k.Title + ".",
		ForwardPerformanceStandby:   true,
		ForwardPerformanceSecondary: true,
	}
	patchOp := &framework.PathOperation{
		Callback: b.handle(b.secretPatcher(k, write, view)),
		Summary: "Change the given settings (or material) of an existing " + k.Title +
			"; anything not sent is kept. Material sent makes a new version, as a write does.",
		ForwardPerformanceStandby:   true,
		ForwardPerformanceSecondary: true,
	}
	return &framework.Path{
		Pattern:        k.Name + "/" + tenantSegment + "/" + nameSegment,
		DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: strings.ReplaceAll(k.Name, "-", "_")},
		Fields:         all,
		ExistenceCheck: b.secretExists(k),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: writeOp,
			logical.UpdateOperation: writeOp,
			logical.PatchOperation:  patchOp,
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.handle(b.secretReader(k, view)),
				Summary:  "Read a " + k.Title + " (current version, or the one given by version).",
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback:                    b.handle(b.secretDeleter(k)),
				Summary:                     "Delete a " + k.Title + " with all its versions and history.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    synopsis,
		HelpDescription: strings.TrimSpace(description),
	}
}

func (b *backend) secretExists(k *secretKind) framework.ExistenceFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
		ref, err := refFrom(k, d)
		if err != nil {
			return false, nil // the handler reports the bad identifier
		}
		e, err := b.loadEntry(ctx, req.Storage, k.Name, ref.tenant, ref.name)
		return e != nil, err
	}
}

func (b *backend) secretReader(k *secretKind, view viewFunc) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		ref, err := refFrom(k, d)
		if err != nil {
			return nil, err
		}
		cfg, err := b.config(ctx, req.Storage)
		if err != nil {
			return nil, err
		}
		now := b.now()
		e, err := b.loadDerived(ctx, req.Storage, ref, cfg, now)
		if err != nil || e == nil {
			return nil, err
		}
		if k.beforeRead != nil && d.Get("version").(int) == 0 {
			// The type may bring the current version up to date first (an
			// OAuth access token about to expire is refreshed).
			if e, err = k.beforeRead(ctx, b, req.Storage, ref, e, d); err != nil || e == nil {
				return nil, err
			}
			now = b.now()
		}
		v, err := pickVersion(e, d.Get("version").(int))
		if err != nil {
			return nil, err
		}
		resp, err := versionResponse(e, v, k, cfg, now, view, true)
		if err == nil {
			b.countUse(req.Storage, e)
		}
		return resp, err
	}
}

// pickVersion returns the requested version, or the current one for 0.
func pickVersion(e *secretEntry, n int) (*secretVersion, error) {
	if n < 0 {
		return nil, badInput("invalid version %d: must be 0 (current) or a positive version number", n)
	}
	if n == 0 {
		n = e.CurrentVersion
	}
	v := e.version(n)
	if v == nil {
		return nil, notFound("version %d of %s/%s/%s is not kept; kept versions: %s", n, e.Kind, e.Tenant, e.Name, keptVersions(e))
	}
	return v, nil
}

func keptVersions(e *secretEntry) string {
	if len(e.Versions) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d to %d", e.Versions[0].Version, e.Versions[len(e.Versions)-1].Version)
}

func versionResponse(e *secretEntry, v *secretVersion, k *secretKind, cfg *engineConfig, now time.Time, view viewFunc, withSecrets bool) (*logical.Response, error) {
	data := e.metadataView(v, k, cfg, now)
	fields, err := view(e, v, withSecrets)
	if err != nil {
		return nil, err
	}
	for name, val := range fields {
		data[name] = val
	}
	return &logical.Response{Data: data}, nil
}

func (b *backend) secretWriter(k *secretKind, write writeFunc, view viewFunc) framework.OperationFunc {
	return b.secretWrite(k, write, view, false)
}

// secretPatcher is PATCH (vault patch, node-vault's update): a write that
// needs the secret to exist. A write already keeps every setting it is not
// given, so a patch differs from it only there: it never creates a secret
// from a partial body.
func (b *backend) secretPatcher(k *secretKind, write writeFunc, view viewFunc) framework.OperationFunc {
	return b.secretWrite(k, write, view, true)
}

func (b *backend) secretWrite(k *secretKind, write writeFunc, view viewFunc, mustExist bool) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		ref, err := refFrom(k, d)
		if err != nil {
			return nil, err
		}
		lock := b.lockFor(ref.key())
		lock.Lock()
		defer lock.Unlock()

		cfg, err := b.config(ctx, req.Storage)
		if err != nil {
			return nil, err
		}
		now := b.now()
		e, err := b.loadDerived(ctx, req.Storage, ref, cfg, now)
		if err != nil {
			return nil, err
		}
		if e == nil && mustExist {
			return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("no %s at %s: PATCH changes an existing secret; write it first", k.Title, ref.path()))
		}
		if e == nil {
			e = &secretEntry{Kind: k.Name, Tenant: ref.tenant, Name: ref.name, CreatedTime: now}
		}
		// Common settings are validated before the type touches the entry, so
		// a rejected request changes nothing.
		settings, err := commonSettingsFrom(d)
		if err != nil {
			return nil, err
		}
		if err := settings.allowedFor(k.classOf(ref.name)); err != nil {
			return nil, err
		}
		// The settings apply before the type's write, so that a max_versions
		// sent with new material bounds the trim that material causes. A
		// failed write saves nothing, settings included.
		settings.apply(e, now)
		if err := write(ctx, b, req, d, e, cfg, now); err != nil {
			return nil, err
		}
		if e.current() == nil {
			return nil, fmt.Errorf("%s write produced no version", k.Name)
		}
		if _, err := e.trim(k, cfg, now); err != nil { // a settings-only write may lower it
			return nil, err
		}
		if e.LastRotated.Equal(now) {
			// The write replaced the material (a new password or key): like
			// a rotation, it ends a run of failed rotations and the count of
			// uses.
			e.clearFailures()
			e.Uses = 0
		}
		if err := b.store(ctx, req.Storage, e, k, cfg, now); err != nil {
			return nil, err
		}
		b.emit(ctx, "write", e, "version", fmt.Sprint(e.CurrentVersion))
		return versionResponse(e, e.current(), k, cfg, now, view, false)
	}
}

// writeVersion makes material the current version as a write does: a new
// version by the caller, and, unless it is the first, a history row with
// reason. rotated says whether the write replaced the secret itself (and so
// restarts its rotation period); a changed username alone does not.
func (e *secretEntry) writeVersion(material interface{}, req *logical.Request, now time.Time, kind *secretKind, cfg *engineConfig,
	rotated bool, reason string) error {
	creating := e.current() == nil
	from := e.CurrentVersion
	if err := e.addVersion(material, actorOf(req), now, kind, cfg); err != nil {
		return err
	}
	if rotated {
		e.LastRotated = now
	}
	if !creating {
		e.record(historyEntry{Time: now, Operation: "write", Trigger: triggerManual, Reason: reason, Actor: actorOf(req),
			Result: "success", FromVersion: from, ToVersion: e.CurrentVersion}, cfg.HistoryLimit)
	}
	return nil
}

// maxMaxUses bounds max_uses.
const maxMaxUses = 1 << 30

// commonSettings are the per-secret overrides every type accepts.
type commonSettings struct {
	rotationPeriod   *time.Duration
	rotationSchedule *string
	autoRotate       *bool
	maxVersions      *int
	maxUses          *int
}

func commonSettingsFrom(d *framework.FieldData) (commonSettings, error) {
	var s commonSettings
	if v, ok := d.GetOk("rotation_period"); ok {
		p, err := checkDuration("rotation_period", v.(int), maxRotationPeriod)
		if err != nil {
			return s, err
		}
		s.rotationPeriod = &p
	}
	if v, ok := d.GetOk("rotation_schedule"); ok {
		expr := strings.TrimSpace(v.(string))
		if len(expr) > 128 {
			return s, badInput("rotation_schedule is too long: at most 128 characters")
		}
		if expr != "" {
			if _, err := parseSchedule(expr); err != nil {
				return s, badInput("rotation_schedule %s is not a 5-field cron expression (minute hour day-of-month month day-of-week, UTC)", quoteShort(expr))
			}
		}
		s.rotationSchedule = &expr
	}
	if v, ok := d.GetOk("auto_rotate"); ok {
		a := v.(bool)
		s.autoRotate = &a
	}
	if v, ok := d.GetOk("disable_automated_rotation"); ok {
		a := !v.(bool)
		if s.autoRotate != nil && *s.autoRotate != a {
			return s, badInput("auto_rotate and disable_automated_rotation contradict each other: give one of the two")
		}
		s.autoRotate = &a
	}
	if s.rotationPeriod != nil && *s.rotationPeriod > 0 && s.rotationSchedule != nil && *s.rotationSchedule != "" {
		return s, badInput("rotation_period and rotation_schedule are mutually exclusive: give one of the two")
	}
	if v, ok := d.GetOk("max_uses"); ok {
		n := v.(int)
		if n < 0 || n > maxMaxUses {
			return s, badInput("max_uses must be between 0 (off) and %d (got %d)", maxMaxUses, n)
		}
		s.maxUses = &n
	}
	if v, ok := d.GetOk("max_versions"); ok {
		n := v.(int)
		if n < 0 || n > maxVersionsLimit {
			return s, badInput("max_versions must be between 0 (use config) and %d (got %d)", maxVersionsLimit, n)
		}
		s.maxVersions = &n
	}
	return s, nil
}

// allowedFor refuses what a manual class cannot do: rotate by itself.
func (s commonSettings) allowedFor(c policyClass) error {
	if !c.manual {
		return nil
	}
	if s.autoRotate != nil && *s.autoRotate {
		return badInput("auto_rotate must be false for a %s: it is made by hand in the provider's console, so only rotate with the new one can replace it", c.title)
	}
	if s.maxUses != nil && *s.maxUses > 0 {
		return badInput("max_uses must be 0 for a %s: it is made by hand in the provider's console and cannot be rotated automatically", c.title)
	}
	return nil
}

func (s commonSettings) apply(e *secretEntry, now time.Time) {
	if s.rotationPeriod != nil {
		e.RotationPeriod = *s.rotationPeriod
	}
	if s.rotationSchedule != nil {
		e.RotationSchedule = *s.rotationSchedule
	}
	if s.autoRotate != nil {
		e.AutoRotate = *s.autoRotate
	}
	if s.maxUses != nil {
		e.MaxUses = *s.maxUses
	}
	if s.maxVersions != nil {
		e.MaxVersions = *s.maxVersions
	}
	e.UpdatedTime = now
}

func (b *backend) secretDeleter(k *secretKind) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		ref, err := refFrom(k, d)
		if err != nil {
			return nil, err
		}
		lock := b.lockFor(ref.key())
		lock.Lock()
		defer lock.Unlock()
		e, _, err := loadSecretChecked(ctx, req.Storage, ref)
		if err != nil {
			return nil, err
		}
		if e == nil { // missing, or unreadable: delete what is there
			e = &secretEntry{Kind: k.Name, Tenant: ref.tenant, Name: ref.name}
		}
		if p := e.pending(); p != nil && k.checkReady == nil { // a version awaiting activation is no rotation in flight
			return nil, logical.CodedError(409, fmt.Sprintf("%s has a rotation in progress (pending version %d); "+
				"delete it once Vault's rollback has finished or undone it (within %s)", ref.path(), p.Version, walRollbackMinAge))
		}
		if err := b.unstore(ctx, req.Storage, ref, e); err != nil {
			return nil, err
		}
		b.emit(ctx, "delete", &secretEntry{Kind: k.Name, Tenant: ref.tenant, Name: ref.name})
		if w := e.removalWarning(k); w != "" {
			b.Logger().Warn("deleted a secret with credentials still owed a removal at the provider", "secret", ref.path())
			resp := &logical.Response{}
			resp.AddWarning(w)
			return resp, nil
		}
		return nil, nil
	}
}

// pathsForKind returns every path of one secret type.
func pathsForKind(b *backend, k *secretKind) []*framework.Path {
	paths := []*framework.Path{pathListTenants(b, k), pathListNames(b, k)}
	paths = append(paths, k.paths(b, k)...)
	if k.revocable {
		paths = append(paths, pathRevokeSecret(b, k))
	}
	return append(paths, pathRotateSecret(b, k), pathHistory(b, k))
}

func pathListTenants(b *backend, k *secretKind) *framework.Path {
	return &framework.Path{
		Pattern:      k.Name + "/?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: k.Name + "_tenants"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: b.listFolder("List the tenants that have a "+k.Title+".",
				func(*framework.FieldData) (string, error) { return secretsStoragePrefix + k.Name + "/", nil }),
		},
		HelpSynopsis: "List tenants with " + k.Title + "s.",
	}
}

func pathListNames(b *backend, k *secretKind) *framework.Path {
	return &framework.Path{
		Pattern:      k.Name + "/" + tenantSegment + "/?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: k.Name + "_names"},
		Fields:       map[string]*framework.FieldSchema{"tenant": tenantField()},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: b.listFolder("List a tenant's "+k.Title+"s.",
				func(d *framework.FieldData) (string, error) {
					tenant := d.Get("tenant").(string)
					return secretsStoragePrefix + k.Name + "/" + tenant + "/", validateIdentifier("tenant", tenant)
				}),
		},
		HelpSynopsis: "List one tenant's " + k.Title + "s.",
	}
}

// listFolder lists the children of the storage folder that folder names.
func (b *backend) listFolder(summary string, folder func(*framework.FieldData) (string, error)) *framework.PathOperation {
	return &framework.PathOperation{
		Summary: summary,
		Callback: b.handle(func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
			prefix, err := folder(d)
			if err != nil {
				return nil, err
			}
			keys, err := listChildren(ctx, req.Storage, prefix)
			if err != nil {
				return nil, err
			}
			return logical.ListResponse(keys), nil
		}),
	}
}

// secretSubPattern is the pattern of {type}/{tenant}/{name}/{suffix}.
func secretSubPattern(kind, suffix string) string {
	return kind + "/" + tenantSegment + "/" + nameSegment + "/" + suffix
}

// secretSubPath starts a {type}/{tenant}/{name}/{suffix} path: the pattern,
// the tenant and name fields plus extra, and OpenAPI names. The caller adds
// the operations and the help.
func secretSubPath(k *secretKind, suffix string, extra map[string]*framework.FieldSchema) *framework.Path {
	fields := map[string]*framework.FieldSchema{"tenant": tenantField(), "name": nameField(k)}
	for name, f := range extra {
		fields[name] = f
	}
	return &framework.Path{
		Pattern:      secretSubPattern(k.Name, suffix),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: k.Name + "_" + suffix},
		Fields:       fields,
	}
}

// entryHandler serves a sub-path of an existing secret, loaded with its
// grace periods as the clock has them.
type entryHandler func(e *secretEntry, ref secretRef, d *framework.FieldData) (*logical.Response, error)

// onEntry resolves the request's tenant and name and loads the secret for
// fn; a missing secret is a 404 naming the path.
func (b *backend) onEntry(k *secretKind, fn entryHandler) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		ref, err := refFrom(k, d)
		if err != nil {
			return nil, err
		}
		cfg, err := b.config(ctx, req.Storage)
		if err != nil {
			return nil, err
		}
		e, err := b.loadDerived(ctx, req.Storage, ref, cfg, b.now())
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, notFound("no %s at %s", k.Title, ref.path())
		}
		return fn(e, ref, d)
	}
}

func pathHistory(b *backend, k *secretKind) *framework.Path {
	p := secretSubPath(k, "history", nil)
	p.Operations = map[logical.Operation]framework.OperationHandler{
		logical.ReadOperation: &framework.PathOperation{
			Callback: b.handle(b.onEntry(k, func(e *secretEntry, _ secretRef, _ *framework.FieldData) (*logical.Response, error) {
				return &logical.Response{Data: map[string]interface{}{
					"history": historyView(e.History), "access": historyView(e.Access),
					"versions": e.versionsView(k), "current_version": e.CurrentVersion,
				}}, nil
			})),
			Summary: "Read the rotation history of a " + k.Title + ", newest first.",
		},
	}
	p.HelpSynopsis = "Rotation history of a " + k.Title + "."
	p.HelpDescription = fmt.Sprintf("Each entry has the time, operation, trigger (%s, %s, %s or %s), reason, incident_id, "+
		"the actor (display_name, entity_id), the result and the versions it moved from and to; a failed rotation names the step "+
		"that failed. Access records (downloads, exports) are listed apart under access, so that they never push a rotation out. "+
		"config history_limit and access_limit bound them (default %d each).",
		triggerTime, triggerEvent, triggerManual, triggerThreshold, defaultHistoryLimit)
	return p
}

// pathMalformed catches every path no other path matched and says what is
// wrong with it: a bad tenant or name segment, or the layout itself. Writes
// get a 400 (bad input); reads, lists and deletes the usual 404. It must be
// the last path of the backend.
//
// Vault resolves ".." segments in a URL before the engine sees the request, so
// `vault write penguinmails/smtp/../x/m1` arrives here as "x/m1"; the message
// explains that, since the user never typed "x/m1".
func pathMalformed(b *backend) *framework.Path {
	handler := &framework.PathOperation{
		Callback: b.handle(func(_ context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
			if err := b.checkSecretSegments(strings.Split(d.Get("rest").(string), "/")); err != nil {
				return nil, err
			}
			kinds := make([]string, 0, len(b.kinds))
			for _, k := range b.sortedKinds() {
				kinds = append(kinds, k.Name)
			}
			msg := fmt.Sprintf("unsupported path %q: secrets live at {type}/{tenant}/{name} with type one of %s; "+
				"a tenant or name must not contain \"..\" (Vault resolves such URL segments before the engine sees them)",
				req.Path, strings.Join(kinds, ", "))
			if req.Operation == logical.UpdateOperation {
				return nil, badInput("%s", msg)
			}
			return nil, logical.CodedError(404, msg)
		}),
		Unpublished: true,
	}
	return &framework.Path{
		Pattern:             `(?P<rest>.+)`,
		Fields:              map[string]*framework.FieldSchema{"rest": {Type: framework.TypeString}},
		TakesArbitraryInput: true,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: handler, logical.ListOperation: handler,
			logical.UpdateOperation: handler, logical.DeleteOperation: handler,
			logical.PatchOperation: handler, // 404 like a read: nothing there to change
		},
		HelpSynopsis: "Reports unsupported and malformed paths.",
	}
}

// checkSecretSegments reports a bad tenant or name in a {type}/... path.
func (b *backend) checkSecretSegments(segs []string) error {
	k := b.kinds[segs[0]]
	if k == nil || len(segs) < 2 {
		return nil
	}
	if err := validateIdentifier("tenant", segs[1]); err != nil {
		return err
	}
	if len(segs) > 2 {
		return k.checkName(segs[1], segs[2])
	}
	return nil
}

func (b *backend) sortedKinds() []*secretKind {
	kinds := make([]*secretKind, 0, len(b.kinds))
	for _, k := range b.kinds {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].Name < kinds[j].Name })
	return kinds
}
