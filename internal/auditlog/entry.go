// Package auditlog reads Vault audit logs (JSON lines, as the file, socket and
// syslog audit devices write them), keeps the entries of one plugin mount and
// turns them into access records and suspicious-activity alerts.
//
// It depends on nothing but the standard library: it parses only the handful
// of fields it needs, so that a 1 GB log streams through in flat memory.
package auditlog

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// rawEntry is the part of one audit line this package reads. Vault writes
// much more (policies, headers, response data); encoding/json skips it.
//
// Which of these fields are HMAC'd by default: auth.accessor (unless the
// device sets hmac_accessor=false) and every string of request.data and
// response.data (unless the mount lists the key in audit_non_hmac_*_keys).
// time, type, error, request.operation, request.path, request.remote_address,
// auth.display_name, auth.entity_id, auth.metadata and response.warnings are
// written as they are.
type rawEntry struct {
	Time     string       `json:"time"`
	Type     string       `json:"type"`
	Error    string       `json:"error"`
	Auth     *rawAuth     `json:"auth"`
	Request  *rawRequest  `json:"request"`
	Response *rawResponse `json:"response"`
}

type rawAuth struct {
	Accessor    string            `json:"accessor"`
	DisplayName string            `json:"display_name"`
	EntityID    string            `json:"entity_id"`
	Metadata    map[string]string `json:"metadata"`
}

type rawRequest struct {
	ID            string `json:"id"`
	Operation     string `json:"operation"`
	Path          string `json:"path"`
	RemoteAddress string `json:"remote_address"`
	// ClientTokenAccessor is there even when auth is not (Vault writes no
	// auth for a request refused as invalid).
	ClientTokenAccessor string `json:"client_token_accessor"`
	// Data is decoded only for the few entries that need it.
	Data json.RawMessage `json:"data"`
}

type rawResponse struct {
	Warnings []string `json:"warnings"`
}

// Record is one access to the mount in the feature document's format
// (timestamp, operation, path, accessor, tenant_id, source_ip) plus the
// secret type and the outcome.
type Record struct {
	Timestamp time.Time `json:"timestamp"`
	Operation string    `json:"operation"`
	// Path is Vault's request path, mount included (penguinmails/smtp/t/n).
	Path string `json:"path"`
	// Accessor is the token's display name (approle, userpass-alice,
	// token-worker...): the token accessor itself is HMAC'd by default.
	Accessor string `json:"accessor"`
	// TenantID is the caller's tenant (token metadata tenant_id), else the
	// tenant the path names. PathTenant is set only when the two differ.
	TenantID   string `json:"tenant_id"`
	PathTenant string `json:"path_tenant,omitempty"`
	SourceIP   string `json:"source_ip"`
	SecretType string `json:"secret_type"`
	// Status is success, error, or no_response for a request entry whose
	// response never appeared in the input.
	Status        string `json:"status"`
	Error         string `json:"error,omitempty"`
	EntityID      string `json:"entity_id,omitempty"`
	TokenAccessor string `json:"token_accessor,omitempty"`
	RequestID     string `json:"request_id,omitempty"`

	// rel is the path below the mount, split on "/"; not printed.
	rel []string
	// callerTenant is the token's tenant_id metadata.
	callerTenant string
	// missingIncident is set on a bulk or tenant rotation known to carry no
	// incident id.
	missingIncident bool
}

// Statuses of a Record.
const (
	StatusSuccess    = "success"
	StatusError      = "error"
	StatusNoResponse = "no_response"
)

var errNotEntry = errors.New("not an audit entry: no type, time or request")

// parseLine decodes one audit line.
func parseLine(line []byte) (*rawEntry, error) {
	var e rawEntry
	if err := json.Unmarshal(line, &e); err != nil {
		return nil, err
	}
	if e.Request == nil || e.Time == "" || (e.Type != "request" && e.Type != "response") {
		return nil, errNotEntry
	}
	return &e, nil
}

// nonSecretPrefixes are the mount's top-level paths that are not secret
// types: under every other first segment the second one is the tenant
// ({type}/{tenant}/{name}), so a secret type added later is covered.
var nonSecretPrefixes = map[string]bool{
	"config": true, "rotate": true, "rotation": true, "rotate-tenant": true, "dkim-domains": true,
}

// recordOf builds the record of an entry of the mount (mount ends in "/"),
// or returns false when the entry is about another path.
func recordOf(e *rawEntry, mount string) (*Record, bool, error) {
	rel, ok := strings.CutPrefix(e.Request.Path, mount)
	if !ok {
		return nil, false, nil
	}
	t, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil {
		return nil, false, err
	}
	r := &Record{
		Timestamp: t.UTC(),
		Operation: e.Request.Operation,
		Path:      e.Request.Path,
		SourceIP:  e.Request.RemoteAddress,
		RequestID: e.Request.ID,
		Status:    StatusSuccess,
		Error:     e.Error,
		rel:       strings.Split(strings.TrimSuffix(rel, "/"), "/"),
	}
	if e.Type == "request" {
		r.Status = StatusNoResponse
	} else if e.Error != "" {
		r.Status = StatusError
	}
	r.SecretType = r.rel[0]
	r.TokenAccessor = e.Request.ClientTokenAccessor
	if a := e.Auth; a != nil {
		r.Accessor, r.EntityID, r.callerTenant = a.DisplayName, a.EntityID, a.Metadata["tenant_id"]
		if a.Accessor != "" {
			r.TokenAccessor = a.Accessor
		}
	}
	r.setTenant()
	r.missingIncident = isTenantOrBulkRotation(r) && !hasIncidentID(e)
	return r, true, nil
}

// setTenant sets TenantID to the caller's tenant, else the path's, and
// PathTenant when the two differ.
func (r *Record) setTenant() {
	pt := pathTenant(r.rel)
	r.TenantID, r.PathTenant = r.callerTenant, ""
	switch {
	case r.TenantID == "":
		r.TenantID = pt
	case pt != "" && pt != r.TenantID:
		r.PathTenant = pt
	}
}

// completeFrom fills in, from the request entry of the same request, what
// Vault left out of the response entry: the caller, for a request refused
// as invalid (no auth in either entry, or in the response only), and the
// error, which the request entry gives in full ("unknown field(s) ...")
// where the response has Vault's generic "invalid request".
func (r *Record) completeFrom(req *Record) {
	if r.Accessor == "" && r.EntityID == "" && r.callerTenant == "" {
		r.Accessor, r.EntityID, r.callerTenant = req.Accessor, req.EntityID, req.callerTenant
		r.setTenant()
	}
	if r.TokenAccessor == "" {
		r.TokenAccessor = req.TokenAccessor
	}
	if req.Error != "" && r.Status == StatusError {
		r.Error = req.Error
	}
}

// pathTenant is the {tenant} segment of {type}/{tenant}/... and of
// rotate-tenant/{tenant}; empty for the mount's other paths.
func pathTenant(rel []string) string {
	if len(rel) < 2 {
		return ""
	}
	if rel[0] == "rotate-tenant" || !nonSecretPrefixes[rel[0]] {
		return rel[1]
	}
	return ""
}

// isTenantOrBulkRotation reports a write that starts a rotation job.
func isTenantOrBulkRotation(r *Record) bool {
	if r.Operation != "update" && r.Operation != "create" {
		return false
	}
	return (len(r.rel) == 2 && r.rel[0] == "rotate" && r.rel[1] == "bulk") ||
		(len(r.rel) == 2 && r.rel[0] == "rotate-tenant")
}

// noIncidentWarning is the start of the warning the plugin adds to a job it
// starts without an incident id (path_jobs.go startJob).
const noIncidentWarning = "no incident_id given"

// hasIncidentID decides whether a rotation job carried an incident id.
//
// A successful response settles it: the plugin warns when the id is missing,
// and warnings are never HMAC'd. Without one (a request entry, or an error
// response) the request data decides: request.data.incident_id is HMAC'd
// unless the mount lists it in audit_non_hmac_request_keys, and Vault HMACs
// an empty string too, so any non-empty value counts as an id there; an
// absent key or a plain "" does not.
func hasIncidentID(e *rawEntry) bool {
	if e.Type == "response" && e.Error == "" {
		for _, w := range responseWarnings(e) {
			if strings.HasPrefix(w, noIncidentWarning) {
				return false
			}
		}
		return true
	}
	var data struct {
		IncidentID json.RawMessage `json:"incident_id"`
	}
	if len(e.Request.Data) == 0 || json.Unmarshal(e.Request.Data, &data) != nil {
		return false
	}
	switch raw := data.IncidentID; {
	case len(raw) == 0 || string(raw) == "null":
		return false
	case raw[0] == '"':
		var s string
		return json.Unmarshal(raw, &s) == nil && strings.TrimSpace(s) != ""
	default:
		return true // a number or another non-string value: not HMAC'd, present
	}
}

func responseWarnings(e *rawEntry) []string {
	if e.Response == nil {
		return nil
	}
	return e.Response.Warnings
}
