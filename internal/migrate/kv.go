package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// kvVersion is one KV v2 version's data and when KV made it.
type kvVersion struct {
	n    int
	made time.Time // zero when KV's metadata does not say
	data map[string]interface{}
}

// kvVersions reads what to copy of one secret: its current version, or with
// AllVersions every version KV still holds, oldest first. Deleted (soft) and
// destroyed versions have no data to copy: notes names them, and a secret
// left with nothing to copy is a skip (reason in the error).
func (m *migrator) kvVersions(ctx context.Context, s source) ([]kvVersion, []string, error) {
	rel := s.typ + "/" + s.tenant + "/" + s.name
	meta, err := m.v.Read(ctx, m.kvPath("metadata", rel), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("reading its KV metadata: %w", err)
	}
	if meta == nil {
		return nil, nil, errSkip("its KV metadata is gone (deleted while the migration ran)")
	}
	current, err := intOf(meta["current_version"])
	if err != nil {
		return nil, nil, fmt.Errorf("reading its KV metadata: current_version: %w", err)
	}
	kept, gone := liveVersions(meta["versions"], time.Now())
	// A deleted current version means the secret is deleted in KV; older
	// versions would otherwise come back as current.
	if why, ok := gone[current]; ok {
		return nil, nil, errSkip(fmt.Sprintf("its current version %d is %s in KV; nothing to copy", current, why))
	}
	if !m.opt.AllVersions {
		kept = []int{current}
	}
	var notes []string
	if m.opt.AllVersions {
		for _, n := range slices.Sorted(maps.Keys(gone)) {
			notes = append(notes, fmt.Sprintf("version %d %s, not copied", n, gone[n]))
		}
	}
	if len(kept) == 0 {
		return nil, nil, errSkip("every KV version is deleted or destroyed; nothing to copy")
	}
	out := make([]kvVersion, 0, len(kept))
	for _, n := range kept {
		resp, err := m.v.Read(ctx, m.kvPath("data", rel), map[string][]string{"version": {strconv.Itoa(n)}})
		if err != nil {
			return nil, nil, fmt.Errorf("reading KV version %d: %w", n, err)
		}
		data, _ := resp["data"].(map[string]interface{})
		if data == nil {
			return nil, nil, errSkip(fmt.Sprintf("KV version %d has no data (deleted while the migration ran)", n))
		}
		out = append(out, kvVersion{n: n, made: versionTime(meta["versions"], strconv.Itoa(n)), data: data})
	}
	return out, notes, nil
}

// liveVersions splits KV's version metadata into the versions that hold
// data (ascending) and those that do not, with why. A deletion_time in the
// future (delete_version_after) has not happened yet.
func liveVersions(raw interface{}, now time.Time) ([]int, map[int]string) {
	versions, _ := raw.(map[string]interface{})
	var live []int
	gone := map[int]string{}
	for key, v := range versions {
		n, err := strconv.Atoi(key)
		if err != nil {
			continue
		}
		meta, _ := v.(map[string]interface{})
		if destroyed, _ := meta["destroyed"].(bool); destroyed {
			gone[n] = "destroyed"
			continue
		}
		if del, _ := meta["deletion_time"].(string); del != "" {
			if t, err := time.Parse(time.RFC3339Nano, del); err != nil || !t.After(now) {
				gone[n] = "deleted"
				continue
			}
		}
		live = append(live, n)
	}
	sort.Ints(live)
	return live, gone
}

// versionTime is the created_time of one version in a versions map (KV's
// metadata or the engine's read); zero when absent or not a time.
func versionTime(versions interface{}, n string) time.Time {
	all, _ := versions.(map[string]interface{})
	info, _ := all[n].(map[string]interface{})
	s, _ := info["created_time"].(string)
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// intOf reads a JSON number however the client decoded it.
func intOf(v interface{}) (int, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err
	case float64:
		return int(n), nil
	case int:
		return n, nil
	case string:
		return strconv.Atoi(strings.TrimSpace(n))
	}
	return 0, fmt.Errorf("not a number (%T)", v)
}

// skipError is a reason to skip a secret that is not a fault in its data.
type skipError string

func (e skipError) Error() string { return string(e) }

func errSkip(reason string) error { return skipError(reason) }
