package penguinmails

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Page sizes of rotation/status.
const (
	defaultStatusLimit = 100
	maxStatusLimit     = 1000
)

// pathRotationStatus answers "what is overdue, due soon, failing?" from the
// due index (index.go), one page at a time, so that its cost follows the
// page, not the number of secrets stored.
func pathRotationStatus(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "rotation/status",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "read", OperationSuffix: "rotation-status"},
		Fields:       statusFields("Only this tenant. Empty: every tenant.", true),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.handle(b.rotationStatus),
				Summary:  "Rotation state of the mount's secrets, soonest due first, one page at a time.",
			},
		},
		HelpSynopsis:    "Secrets by rotation state: overdue, due soon, healthy, failing.",
		HelpDescription: strings.TrimSpace(statusHelp),
	}
}

// pathTenantRotationStatus is rotation/status for one tenant, with the tenant
// in the path. Vault policies cannot template the values of
// allowed_parameters, but they can template paths: a tenant's policy grants
// rotation/status/{{identity.entity.metadata.tenant_id}} and so sees its own
// rows and no other tenant's. Same fields (minus tenant), same answer as
// rotation/status?tenant=X.
func pathTenantRotationStatus(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "rotation/status/" + tenantSegment,
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "read", OperationSuffix: "tenant-rotation-status"},
		Fields:       statusFields("The tenant whose rows to show.", false),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.handle(b.tenantRotationStatus),
				Summary:  "Rotation state of one tenant's secrets, soonest due first, one page at a time.",
			},
		},
		HelpSynopsis:    "One tenant's secrets by rotation state: overdue, due soon, healthy, failing.",
		HelpDescription: strings.TrimSpace(statusHelp),
	}
}

// statusFields are the fields of both status paths; tenant is a query field
// of rotation/status and the last path segment of rotation/status/{tenant}.
func statusFields(tenantHelp string, tenantQuery bool) map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"type": {Type: framework.TypeCommaStringSlice, Query: true,
			Description: "Secret types to show (for example smtp,dkim). Empty: every type."},
		"tenant": {Type: framework.TypeString, Query: tenantQuery, Description: tenantHelp},
		"status": {Type: framework.TypeString, Query: true,
			Description: "Only secrets in this state: overdue, due_soon, healthy, not_scheduled or failing. Empty: every state."},
		"due_within": {Type: framework.TypeDurationSecond, Query: true,
			Description: "Only secrets whose next_rotation is within this long from now (overdue included), for example 7d."},
		"limit": {Type: framework.TypeInt, Query: true, Default: defaultStatusLimit,
			Description: "Rows per page (default 100, at most 1000)."},
		"after": {Type: framework.TypeString, Query: true,
			Description: "Cursor: the next_after of the previous page. Empty: the first page."},
	}
}

// tenantRotationStatus answers rotation/status/{tenant}. The path's tenant
// wins over request data in the sdk, so a tenant query field would be
// silently ignored; it is refused instead, so nobody believes it applied.
func (b *backend) tenantRotationStatus(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if _, ok := req.Data["tenant"]; ok {
		return nil, badInput("tenant is the last segment of rotation/status/{tenant}: this path takes no tenant query field")
	}
	return b.rotationStatus(ctx, req, d)
}

// statusQuery is a validated rotation/status request.
type statusQuery struct {
	kinds     map[string]*secretKind
	tenant    string
	status    string
	dueWithin time.Duration
	limit     int
	after     string
	now       time.Time
	cfg       *engineConfig
}

func (b *backend) statusQueryFrom(ctx context.Context, req *logical.Request, d *framework.FieldData) (*statusQuery, error) {
	q := &statusQuery{kinds: map[string]*secretKind{}, now: b.now(), after: d.Get("after").(string)}
	kinds, err := b.kindsNamed("type", d.Get("type").([]string))
	if err != nil {
		return nil, err
	}
	for _, k := range kinds {
		q.kinds[k.Name] = k
	}
	if q.tenant = strings.TrimSpace(d.Get("tenant").(string)); q.tenant != "" {
		if err := validateIdentifier("tenant", q.tenant); err != nil {
			return nil, err
		}
	}
	switch q.status = strings.TrimSpace(d.Get("status").(string)); q.status {
	case "", rotationOverdue, rotationDueSoon, rotationHealthy, rotationNotScheduled, rotationFailing:
	default:
		return nil, badInput("status must be one of overdue, due_soon, healthy, not_scheduled, failing (got %s)", quoteShort(q.status))
	}
	if secs := d.Get("due_within").(int); secs < 0 {
		return nil, badInput("due_within must not be negative")
	} else {
		q.dueWithin = time.Duration(secs) * time.Second
	}
	if q.limit = d.Get("limit").(int); q.limit < 1 || q.limit > maxStatusLimit {
		return nil, badInput("limit must be between 1 and %d (got %d)", maxStatusLimit, q.limit)
	}
	if len(q.after) > 600 {
		return nil, badInput("after is not a cursor returned by rotation/status")
	}
	q.cfg, err = b.config(ctx, req.Storage)
	return q, err
}

func (b *backend) rotationStatus(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	q, err := b.statusQueryFrom(ctx, req, d)
	if err != nil {
		return nil, err
	}
	var rows []map[string]interface{}
	var next string
	switch {
	case q.tenant != "":
		rows, next, err = b.statusOfTenant(ctx, req.Storage, q)
	case q.status == rotationFailing:
		rows, next, err = b.statusOfFailing(ctx, req.Storage, q)
	default:
		rows, next, err = b.statusFromIndex(ctx, req.Storage, q)
	}
	if err != nil {
		return nil, err
	}
	out := make([]interface{}, len(rows))
	for i, r := range rows {
		out[i] = r
	}
	data := map[string]interface{}{"secrets": out, "count": len(out), "next_after": next, "as_of": formatTime(q.now)}
	resp := &logical.Response{Data: data}
	if err := b.indexState(ctx, req.Storage, data, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// indexState reports an unfinished index rebuild and unreadable entries.
func (b *backend) indexState(ctx context.Context, s logical.Storage, data map[string]interface{}, resp *logical.Response) error {
	st, err := loadRebuild(ctx, s)
	if err != nil {
		return err
	}
	index := map[string]interface{}{"state": "ready"}
	if st == nil || st.Finished.IsZero() {
		index["state"] = "rebuilding"
		resp.AddWarning("the due index is being rebuilt: rows may be missing or stale until it finishes")
	}
	if st != nil {
		index["rebuild_reason"], index["rebuild_started"] = st.Reason, formatTime(st.Started)
		index["rebuild_finished"], index["rebuild_done"] = formatTime(st.Finished), st.Done
	}
	unreadable, err := listChildren(ctx, s, indexUnreadablePrefix)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(unreadable))
	for _, id := range unreadable {
		paths = append(paths, strings.ReplaceAll(id, ":", "/"))
	}
	index["unreadable"] = paths
	if len(paths) > 0 {
		resp.AddWarning("some stored secrets cannot be decoded and are skipped by rotation; see index.unreadable")
	}
	data["index"] = index
	return nil
}

// statusFromIndex walks the due index day by day from the cursor.
func (b *backend) statusFromIndex(ctx context.Context, s logical.Storage, q *statusQuery) ([]map[string]interface{}, string, error) {
	days, err := listChildren(ctx, s, indexDaysPrefix)
	if err != nil {
		return nil, "", err
	}
	afterDay, afterItem, _ := strings.Cut(q.after, "/")
	last := q.lastDay()
	var rows []map[string]interface{}
	for _, day := range days { // sorted; "never" sorts after every date
		if day < afterDay || (last != "" && day > last) {
			continue
		}
		names, err := listChildren(ctx, s, indexDuePrefix+day+"/")
		if err != nil {
			return nil, "", err
		}
		for _, n := range names {
			if day == afterDay && n <= afterItem {
				continue
			}
			it, ok := parseItem(n)
			k := q.kinds[it.kind]
			if !ok || k == nil || !q.timeMatches(it.at, k, it.name) {
				continue
			}
			row, err := b.statusRow(ctx, s, q, k, it, indexDuePrefix+day+"/"+n)
			if err != nil {
				return nil, "", err
			}
			if row == nil {
				continue
			}
			rows = append(rows, row)
			if len(rows) == q.limit {
				return rows, day + "/" + n, nil
			}
		}
	}
	return rows, "", nil
}

// lastDay is the last day bucket the query can match ("" = no bound).
func (q *statusQuery) lastDay() string {
	var horizon time.Duration = -1
	switch q.status {
	case rotationOverdue:
		horizon = 0
	case rotationDueSoon:
		for _, k := range q.kinds {
			for _, c := range k.policyClasses() {
				if t := c.policy(q.cfg).AlertThreshold; t > horizon {
					horizon = t
				}
			}
		}
	}
	if q.dueWithin > 0 && (horizon < 0 || q.dueWithin < horizon) {
		horizon = q.dueWithin
	}
	if horizon < 0 {
		return ""
	}
	return dayBucket(q.now.Add(horizon))
}

// timeMatches filters by the index time before the entry is read.
func (q *statusQuery) timeMatches(at time.Time, k *secretKind, name string) bool {
	if q.dueWithin > 0 && (at.IsZero() || at.After(q.now.Add(q.dueWithin))) {
		return false
	}
	if q.status == "" {
		return true
	}
	return statusAt(at, k.policy(q.cfg, name), q.now) == q.status
}

// statusRow reads one secret and renders its row; nil when the index key is
// stale (the entry moved on) or the secret is gone.
func (b *backend) statusRow(ctx context.Context, s logical.Storage, q *statusQuery, k *secretKind, it indexItem, key string) (map[string]interface{}, error) {
	if q.tenant != "" && it.tenant != q.tenant {
		return nil, nil
	}
	e, _, err := loadSecretChecked(ctx, s, secretRef{kind: k, tenant: it.tenant, name: it.name})
	if err != nil || e == nil {
		return nil, err
	}
	if key != "" && e.Indexed.Due != "" && e.Indexed.Due != key {
		return nil, nil
	}
	return secretStatusRow(e, k, q.cfg, q.now), nil
}

func secretStatusRow(e *secretEntry, k *secretKind, cfg *engineConfig, now time.Time) map[string]interface{} {
	pol := k.policy(cfg, e.Name)
	return map[string]interface{}{
		"type": k.Name, "tenant": e.Tenant, "name": e.Name, "path": k.Name + "/" + e.Tenant + "/" + e.Name,
		"last_rotated": formatTime(e.LastRotated), "next_rotation": formatTime(e.nextRotation(pol)),
		"status": e.rotationStatus(pol, now), "risk_level": pol.RiskLevel, "auto_rotate": e.AutoRotate,
		"failing": e.LastRotationError != "" || e.Halted != "" || e.removalsFailing(), "halted": e.Halted, "last_error": e.LastRotationError, "rotation_failures": e.RotationFailures,
		"pending_removals": len(e.Removals),
	}
}

// statusOfFailing lists secrets whose last rotation failed.
func (b *backend) statusOfFailing(ctx context.Context, s logical.Storage, q *statusQuery) ([]map[string]interface{}, string, error) {
	ids, err := listChildren(ctx, s, indexFailingPrefix)
	if err != nil {
		return nil, "", err
	}
	var rows []map[string]interface{}
	for _, id := range ids {
		if id <= q.after {
			continue
		}
		it, ok := parseItem("0:" + id)
		k := q.kinds[it.kind]
		if !ok || k == nil {
			continue
		}
		row, err := b.statusRow(ctx, s, q, k, it, "")
		if err != nil {
			return nil, "", err
		}
		if row == nil || !row["failing"].(bool) || !q.rowMatches(row) {
			continue
		}
		rows = append(rows, row)
		if len(rows) == q.limit {
			return rows, id, nil
		}
	}
	return rows, "", nil
}

// rowMatches applies due_within to a row read without the index.
func (q *statusQuery) rowMatches(row map[string]interface{}) bool {
	if q.dueWithin <= 0 {
		return true
	}
	next, err := time.Parse(time.RFC3339, row["next_rotation"].(string))
	return err == nil && !next.After(q.now.Add(q.dueWithin))
}

// statusOfTenant reads one tenant's secrets directly: a tenant has few.
func (b *backend) statusOfTenant(ctx context.Context, s logical.Storage, q *statusQuery) ([]map[string]interface{}, string, error) {
	type keyed struct {
		key string
		row map[string]interface{}
	}
	var all []keyed
	for _, k := range q.kinds {
		names, err := listChildren(ctx, s, secretsStoragePrefix+k.Name+"/"+q.tenant+"/")
		if err != nil {
			return nil, "", err
		}
		for _, n := range names {
			e, _, err := loadSecretChecked(ctx, s, secretRef{kind: k, tenant: q.tenant, name: n})
			if err != nil {
				return nil, "", err
			}
			if e == nil {
				continue
			}
			row := secretStatusRow(e, k, q.cfg, q.now)
			st := row["status"].(string)
			if q.status == rotationFailing && !row["failing"].(bool) || q.status != "" && q.status != rotationFailing && st != q.status || !q.rowMatches(row) {
				continue
			}
			next := e.nextRotation(k.policy(q.cfg, n))
			all = append(all, keyed{dayBucket(next) + "/" + itemName(next, k.Name, q.tenant, n), row})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
	var rows []map[string]interface{}
	for _, r := range all {
		if r.key <= q.after {
			continue
		}
		rows = append(rows, r.row)
		if len(rows) == q.limit {
			return rows, r.key, nil
		}
	}
	return rows, "", nil
}

const statusHelp = `
One row per secret: type, tenant, name, path, last_rotated, next_rotation,
status (overdue, due_soon, healthy, not_scheduled), risk_level (per type, set
in config), auto_rotate, failing, last_error and rotation_failures. Rows come
soonest due first. Filters: type, tenant, status (also failing: the last
rotation failed), due_within (for example 7d, overdue included).

It answers from the due index, a page at a time: limit rows (default 100, at
most 1000); pass next_after as after for the next page (empty when there is
none). index.state is "rebuilding" while the index is rebuilt (after an
upgrade or a change of a rotation period), when rows may be missing or
stale; index.unreadable lists stored entries that cannot be decoded and are
skipped by rotation.

This replaces rotation-report, which read every secret on each call.
`
