// Package migrate copies the platform's secrets out of a KV v2 mount
// (secret/penguinmails/{smtp,api-keys,dkim,ssh}/{tenant}/{name}) into the
// penguinmails engine. It plans first (each source -> destination, with the
// action it needs), writes only when asked, compares the engine's material
// with the source before writing (so a second run changes nothing) and reads
// every written secret back to verify it. It never prints a secret value:
// plan rows and reasons carry paths, field names and actions only.
//
// The package talks to Vault through the narrow Vault interface, so it needs
// no Vault SDK and its tests run against an in-memory fake.
package migrate

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Vault is the part of a Vault client the migration uses. Paths are full
// logical paths, mount included. Read and List answer nil (and no error)
// for a path that does not exist.
type Vault interface {
	Read(ctx context.Context, path string, query map[string][]string) (map[string]interface{}, error)
	List(ctx context.Context, path string) ([]string, error)
	Write(ctx context.Context, path string, data map[string]interface{}) (map[string]interface{}, error)
	Delete(ctx context.Context, path string) error
}

// Options says where to read, where to write and how.
type Options struct {
	SourceMount  string // KV v2 mount, "secret"
	SourcePrefix string // folder in it, "penguinmails"
	EngineMount  string // engine mount, "penguinmails"
	Apply        bool   // write; false is a dry run
	AllVersions  bool   // copy every kept KV version, oldest first
	Out          io.Writer
	// Progress, when set, is called after each source secret.
	Progress func(done, total int)
}

// Action is what a source secret needs, or what was done with it.
type Action string

// Actions of plan rows.
const (
	ActionCreate    Action = "create"
	ActionUpdate    Action = "update"
	ActionUnchanged Action = "unchanged"
	ActionSkip      Action = "skip"
	ActionFail      Action = "fail"
)

// Summary counts the rows by outcome.
type Summary struct {
	Created, Updated, Unchanged, Skipped, Failed int
}

func (s *Summary) add(a Action) {
	switch a {
	case ActionCreate:
		s.Created++
	case ActionUpdate:
		s.Updated++
	case ActionUnchanged:
		s.Unchanged++
	case ActionSkip:
		s.Skipped++
	case ActionFail:
		s.Failed++
	}
}

func (s Summary) String() string {
	return fmt.Sprintf("created %d, updated %d, unchanged %d, skipped %d, failed %d",
		s.Created, s.Updated, s.Unchanged, s.Skipped, s.Failed)
}

// Row is one line of the plan: a source secret, its destination and the
// action (with a detail, or the reason of a skip or a failure). Detail and
// Reason never hold a secret value.
type Row struct {
	Source, Dest string
	Action       Action
	Detail       string
}

func (r Row) String() string {
	line := fmt.Sprintf("%-9s %s", r.Action, r.Source)
	if r.Dest != "" {
		line += " -> " + r.Dest
	}
	if r.Detail != "" {
		sep := " "
		if r.Action == ActionSkip || r.Action == ActionFail {
			sep = ": "
		}
		line += sep + r.Detail
	}
	return line
}

// Run migrates (or, without Apply, plans) every source secret, printing one
// row per secret and then the summary to opt.Out.
func Run(ctx context.Context, v Vault, opt Options) (Summary, error) {
	m := &migrator{v: v, opt: opt}
	if err := m.checkEngine(ctx); err != nil {
		return Summary{}, err
	}
	sources, skipped, err := m.discover(ctx)
	if err != nil {
		return Summary{}, err
	}
	var sum Summary
	for _, r := range skipped {
		sum.add(r.Action)
		fmt.Fprintln(opt.Out, r)
	}
	seen := map[string]string{}
	for i, src := range sources {
		row := m.migrate(ctx, src, seen)
		sum.add(row.Action)
		fmt.Fprintln(opt.Out, row)
		if opt.Progress != nil {
			opt.Progress(i+1, len(sources))
		}
	}
	mode := "dry run, nothing written; run with -apply to write"
	if opt.Apply {
		mode = "applied"
	}
	fmt.Fprintf(opt.Out, "summary: %s (%s)\n", sum, mode)
	return sum, nil
}

type migrator struct {
	v   Vault
	opt Options
}

// checkEngine refuses a mount with no engine: a read of a missing secret
// and a read under a missing mount both answer 404, so without this check
// every secret would be planned as a create. The engine's config always
// reads; a token not allowed to read it (403) is let through.
func (m *migrator) checkEngine(ctx context.Context) error {
	cfg, err := m.v.Read(ctx, m.opt.EngineMount+"/config", nil)
	if err == nil && cfg == nil {
		return fmt.Errorf("no penguinmails engine at %s/ (%s/config answers 404): check -mount", m.opt.EngineMount, m.opt.EngineMount)
	}
	return nil
}

// source is one KV v2 secret found under the prefix.
type source struct {
	typ    string // folder name as found: smtp, api-keys, api-key, dkim, ssh
	kind   string // the engine's type
	tenant string
	name   string
}

// sourceTypes maps the KV folders to the engine's types; api-key is the
// feature document's own spelling (storeCredential's type).
var sourceTypes = map[string]string{"smtp": "smtp", "api-keys": "api-keys", "api-key": "api-keys", "dkim": "dkim", "ssh": "ssh"}

func (m *migrator) kvPath(area, rest string) string {
	return strings.Join([]string{m.opt.SourceMount, area, m.opt.SourcePrefix, rest}, "/")
}

func (m *migrator) display(s source) string {
	return fmt.Sprintf("%s/%s/%s/%s/%s", m.opt.SourceMount, m.opt.SourcePrefix, s.typ, s.tenant, s.name)
}

// discover lists {prefix}/{type}/{tenant}/{name}. Folders of other types and
// entries at another depth are skipped with a row saying so.
func (m *migrator) discover(ctx context.Context) ([]source, []Row, error) {
	types, err := m.v.List(ctx, m.kvPath("metadata", ""))
	if err != nil {
		return nil, nil, fmt.Errorf("listing %s/%s/: %w", m.opt.SourceMount, m.opt.SourcePrefix, err)
	}
	var out []source
	var skipped []Row
	sort.Strings(types)
	for _, t := range types {
		folder := strings.TrimSuffix(t, "/")
		kind, ok := sourceTypes[folder]
		if !ok || !strings.HasSuffix(t, "/") {
			skipped = append(skipped, Row{Source: m.opt.SourceMount + "/" + m.opt.SourcePrefix + "/" + t, Action: ActionSkip,
				Detail: "not a secret type the engine holds (smtp, api-keys, api-key, dkim, ssh)"})
			continue
		}
		found, skips, err := m.discoverType(ctx, folder, kind)
		if err != nil {
			return nil, nil, err
		}
		out, skipped = append(out, found...), append(skipped, skips...)
	}
	return out, skipped, nil
}

func (m *migrator) discoverType(ctx context.Context, folder, kind string) ([]source, []Row, error) {
	var out []source
	var skipped []Row
	tenants, err := m.v.List(ctx, m.kvPath("metadata", folder+"/"))
	if err != nil {
		return nil, nil, fmt.Errorf("listing %s: %w", folder, err)
	}
	sort.Strings(tenants)
	for _, t := range tenants {
		where := fmt.Sprintf("%s/%s/%s/%s", m.opt.SourceMount, m.opt.SourcePrefix, folder, t)
		if !strings.HasSuffix(t, "/") {
			skipped = append(skipped, Row{Source: where, Action: ActionSkip, Detail: "a secret directly under the type folder; expected {type}/{tenant}/{name}"})
			continue
		}
		names, err := m.v.List(ctx, m.kvPath("metadata", folder+"/"+t))
		if err != nil {
			return nil, nil, fmt.Errorf("listing %s: %w", where, err)
		}
		sort.Strings(names)
		for _, n := range names {
			if strings.HasSuffix(n, "/") {
				skipped = append(skipped, Row{Source: where + n, Action: ActionSkip, Detail: "a folder below {type}/{tenant}/{name}; expected a secret"})
				continue
			}
			out = append(out, source{typ: folder, kind: kind, tenant: strings.TrimSuffix(t, "/"), name: n})
		}
	}
	return out, skipped, nil
}
