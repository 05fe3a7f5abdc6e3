package auditlog

import "time"

// Filter selects records. Zero fields select everything.
type Filter struct {
	Tenant     string // the record's tenant_id or the tenant its path names
	SecretType string // smtp, ssh, dkim, api-keys, oauth, config, rotate...
	Operation  string // Vault's operation: create, read, update, delete, list
	Since      time.Time
	Until      time.Time // exclusive
}

// inRange reports whether t is inside [Since, Until).
func (f Filter) inRange(t time.Time) bool {
	if !f.Since.IsZero() && t.Before(f.Since) {
		return false
	}
	return f.Until.IsZero() || t.Before(f.Until)
}

// selects applies the tenant, type and operation filters.
func (f Filter) selects(r *Record) bool {
	if f.Tenant != "" && r.TenantID != f.Tenant && r.PathTenant != f.Tenant {
		return false
	}
	if f.SecretType != "" && r.SecretType != f.SecretType {
		return false
	}
	return f.Operation == "" || r.Operation == f.Operation
}
