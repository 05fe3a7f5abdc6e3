package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// identifierRe is the engine's rule for tenant ids and secret names.
var identifierRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// migrate plans one source secret and, with Apply, carries the plan out.
// seen maps each destination to the first source that claimed it.
func (m *migrator) migrate(ctx context.Context, s source, seen map[string]string) Row {
	row := Row{Source: m.display(s)}
	targets, notes, err := m.targets(ctx, s)
	if err != nil {
		return failOrSkip(row, err)
	}
	last := targets[len(targets)-1]
	row.Dest = fmt.Sprintf("%s/%s/%s/%s", m.opt.EngineMount, s.kind, s.tenant, last.name)
	if first, dup := seen[row.Dest]; dup {
		return failOrSkip(row, bad("%s goes to the same destination; keep one of the two in KV", first))
	}
	seen[row.Dest] = row.Source
	if len(last.ignored) > 0 {
		notes = append(notes, "fields not copied: "+strings.Join(last.ignored, ", "))
	}
	cur, err := m.v.Read(ctx, row.Dest, nil)
	if err != nil {
		return failOrSkip(row, fmt.Errorf("reading the engine's secret: %w", err))
	}
	row.Action, row.Detail, err = planFor(cur, targets)
	if err != nil {
		return failOrSkip(row, err)
	}
	if row.Action == ActionUnchanged || !m.opt.Apply {
		row.Detail = joinNotes(row.Detail, notes)
		return row
	}
	if row.Action == ActionUpdate {
		targets = targets[len(targets)-1:] // an existing secret gets the current material only
	}
	if err := m.write(ctx, row.Dest, s.kind, targets, cur == nil); err != nil {
		return failOrSkip(row, err)
	}
	row.Detail = joinNotes(strings.TrimSpace(row.Detail+" verified"), notes)
	return row
}

// targets reads and maps the versions to copy. Every version is mapped
// before anything is written, so a bad one stops the whole secret.
func (m *migrator) targets(ctx context.Context, s source) ([]target, []string, error) {
	if !identifierRe.MatchString(s.tenant) || strings.Contains(s.tenant, "..") {
		return nil, nil, bad("tenant %q does not fit the engine's rule ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", s.tenant)
	}
	versions, notes, err := m.kvVersions(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	if s.kind == "api-keys" && len(versions) > 1 {
		// A replaced key's overlap ends with its deletion at the provider:
		// importing old keys as versions would delete them there.
		versions = versions[len(versions)-1:]
		notes = append(notes, "api-keys: only the current version is copied")
	}
	out := make([]target, 0, len(versions))
	for _, v := range versions {
		t, err := mapVersion(s.kind, s.name, v.data)
		if err != nil {
			return nil, nil, inVersion(v.n, len(versions), err)
		}
		if s.kind != "dkim" && s.kind != "api-keys" && !identifierRe.MatchString(t.name) {
			return nil, nil, bad("name %q does not fit the engine's rule ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", t.name)
		}
		t.made = v.made
		out = append(out, t)
	}
	if s.kind == "dkim" {
		if err := checkSelectors(versions, out); err != nil {
			return nil, nil, err
		}
	}
	return out, notes, nil
}

// inVersion puts the version number in front of a fault of one of several
// versions.
func inVersion(n, of int, err error) error {
	var b badEntry
	if of > 1 && errors.As(err, &b) {
		return bad("version %d: %s", n, b)
	}
	return err
}

// checkSelectors refuses versions that give one selector to two keys: the
// engine never reuses a selector for another key (a resolver cache could
// tie it to the old one), so the copy would stop half-way.
func checkSelectors(versions []kvVersion, ts []target) error {
	owner := map[string]int{}
	for i, t := range ts {
		sel := t.expect["selector"]
		if j, ok := owner[sel]; ok && ts[j].expect["public_key"] != t.expect["public_key"] {
			return bad("versions %d and %d use selector %s for different keys; the engine keeps one key per selector: copy without -all-versions",
				versions[j].n, versions[i].n, sel)
		}
		owner[sel] = i
	}
	return nil
}

// planFor compares the engine's current secret with the source's newest
// version; a skip error when KV's material is older than the engine's.
func planFor(cur map[string]interface{}, ts []target) (Action, string, error) {
	if cur == nil {
		if len(ts) == 1 {
			return ActionCreate, "", nil
		}
		return ActionCreate, fmt.Sprintf("(%d versions, oldest first)", len(ts)), nil
	}
	last := ts[len(ts)-1]
	diff, material := differences(cur, last)
	switch {
	case len(diff) == 0:
		return ActionUnchanged, "", nil
	case material:
		if err := engineAhead(cur, last); err != nil {
			return "", "", err
		}
		return ActionUpdate, "(new version; differs: " + strings.Join(diff, ", ") + ")", nil
	default:
		return ActionUpdate, "(settings in place; differs: " + strings.Join(diff, ", ") + ")", nil
	}
}

// engineAhead refuses to copy KV's material over the engine's when the
// engine made its newest live version no earlier than KV made the one to
// copy: the engine rotated or was written since, so KV's material is stale,
// and writing it would make the live credential a replaced version (an API
// key's is then deleted at the provider when its overlap ends). The
// engine's times have whole seconds: a tie counts as the engine's.
func engineAhead(read map[string]interface{}, t target) error {
	if t.made.IsZero() {
		return errSkip("the material differs, and KV's metadata has no created_time, so which is newer cannot be told; not copied")
	}
	engine := newestLiveVersion(read["versions"])
	if t.made.Truncate(time.Second).After(engine) {
		return nil
	}
	return errSkip(fmt.Sprintf("the material differs and the engine's newest version (%s) is not older than KV's (%s): "+
		"the engine was rotated or written since, so KV's material is stale and is not copied over it",
		engine.UTC().Format(time.RFC3339), t.made.UTC().Format(time.RFC3339Nano)))
}

// newestLiveVersion is the latest created_time in the engine's versions
// map, of the versions in force: a DKIM key still pending is left out, as it
// may be one this tool imported and could not activate (the next run
// activates it); an engine rotation's pending key stands beside the active
// one that the copy made, which is newer than KV's already.
func newestLiveVersion(versions interface{}) time.Time {
	all, _ := versions.(map[string]interface{})
	var newest time.Time
	for n, v := range all {
		if info, _ := v.(map[string]interface{}); info["stage"] == "pending" {
			continue
		}
		if t := versionTime(all, n); t.After(newest) {
			newest = t
		}
	}
	return newest
}

// differences names the expected fields the engine's read does not show
// (names only), and whether one of them is secret material.
func differences(read map[string]interface{}, t target) ([]string, bool) {
	var diff []string
	material := false
	for _, k := range slices.Sorted(maps.Keys(t.expect)) {
		if normalize(k, read[k]) == t.expect[k] {
			continue
		}
		diff = append(diff, k)
		for _, mk := range t.material {
			material = material || mk == k
		}
	}
	return diff, material
}

// normalize spells a read value the way expect does.
func normalize(field string, v interface{}) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	case []interface{}:
		parts := make([]string, 0, len(x))
		for _, p := range x {
			parts = append(parts, fmt.Sprint(p))
		}
		return normScopes(parts)
	case []string:
		return normScopes(x)
	}
	return fmt.Sprint(v)
}

// write copies the targets in order, verifying each by reading it back. A
// failure after the first write of a secret this run created deletes it
// again, so the engine never keeps half of a secret's versions.
func (m *migrator) write(ctx context.Context, dest, kind string, ts []target, creating bool) error {
	for i, t := range ts {
		wrote, err := m.writeOne(ctx, dest, kind, t)
		if err == nil {
			continue
		}
		if len(ts) > 1 {
			err = fmt.Errorf("copying version %d of %d: %w", i+1, len(ts), err)
		}
		// A first version written but failing its check counts too: the
		// next run would see the secret and copy only the newest version.
		if creating && (i > 0 || wrote) {
			if derr := m.v.Delete(ctx, dest); derr != nil {
				return fmt.Errorf("%w; removing the versions written before also failed (%v): delete %s by hand", err, derr, dest)
			}
			return fmt.Errorf("%w; the versions written before were removed again", err)
		}
		return err
	}
	return nil
}

// writeOne writes one version and verifies it; wrote says whether the
// engine accepted the write (so that a failure after it leaves something).
func (m *migrator) writeOne(ctx context.Context, dest, kind string, t target) (wrote bool, err error) {
	// A DKIM key an earlier run imported but could not activate is still
	// waiting: the engine refuses another import (409) until it is
	// activated, so it is activated below instead.
	if kind != "dkim" || !m.pendingAsWritten(ctx, dest, t, nil) {
		if _, err := m.v.Write(ctx, dest, t.write); err != nil {
			return false, fmt.Errorf("writing: %w", err)
		}
	}
	diff, err := m.verify(ctx, dest, t)
	if err != nil {
		return true, err
	}
	if kind == "dkim" && len(diff) > 0 && m.pendingAsWritten(ctx, dest, t, diff) {
		// An imported key waits for activation like a new one; the
		// migrated key is already published and signing, so it is
		// activated at once. Only when the waiting key and selector read
		// back as written: a key stored wrongly must never become the signer.
		if _, err := m.v.Write(ctx, dest+"/activate", map[string]interface{}{"reason": "migrated from KV v2: the key was already in use"}); err != nil {
			return true, fmt.Errorf("activating the imported key: %w", err)
		}
		if diff, err = m.verify(ctx, dest, t); err != nil {
			return true, err
		}
	}
	if len(diff) > 0 {
		return true, fmt.Errorf("verification failed: the engine's read differs from the source in %s", strings.Join(diff, ", "))
	}
	return true, nil
}

// pendingAsWritten reports whether the DKIM key waiting for activation is
// the one written. A first key reads as itself with status pending (diff is
// just status); a later one waits beside the active key, which the read
// shows, so the waiting version is read by its number.
func (m *migrator) pendingAsWritten(ctx context.Context, dest string, t target, diff []string) bool {
	if slices.Equal(diff, []string{"status"}) {
		return true
	}
	read, err := m.v.Read(ctx, dest, nil)
	if err != nil || read == nil {
		return false
	}
	versions, _ := read["versions"].(map[string]interface{})
	for n, v := range versions {
		if info, _ := v.(map[string]interface{}); info["stage"] == "pending" {
			pending, err := m.v.Read(ctx, dest, map[string][]string{"version": {n}})
			if err != nil || pending == nil {
				return false
			}
			d, _ := differences(pending, t)
			return len(d) == 0 || slices.Equal(d, []string{"status"})
		}
	}
	return false
}

func (m *migrator) verify(ctx context.Context, dest string, t target) ([]string, error) {
	read, err := m.v.Read(ctx, dest, nil)
	if err != nil {
		return nil, fmt.Errorf("reading back: %w", err)
	}
	if read == nil {
		return nil, fmt.Errorf("reading back: the secret is not there")
	}
	diff, _ := differences(read, t)
	return diff, nil
}

func failOrSkip(row Row, err error) Row {
	var skip skipError
	if errors.As(err, &skip) {
		row.Action, row.Detail = ActionSkip, string(skip)
		return row
	}
	row.Action, row.Detail = ActionFail, err.Error()
	return row
}

func joinNotes(detail string, notes []string) string {
	parts := []string{}
	if detail != "" {
		parts = append(parts, detail)
	}
	if len(notes) > 0 {
		parts = append(parts, "("+strings.Join(notes, "; ")+")")
	}
	return strings.Join(parts, " ")
}
