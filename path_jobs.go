package penguinmails

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// jobFields are taken by every path that starts a rotation job.
func jobFields() map[string]*framework.FieldSchema {
	fields := rotationFields()
	fields["revoke_previous"] = revokePreviousField()
	fields["types"] = &framework.FieldSchema{Type: framework.TypeCommaStringSlice,
		Description: "Secret types to rotate (for example smtp,ssh). Empty: every type."}
	return fields
}

func pathRotateBulk(b *backend) *framework.Path {
	fields := jobFields()
	fields["tenant"] = &framework.FieldSchema{Type: framework.TypeString,
		Description: "Only this tenant. Empty: every tenant."}
	fields["status"] = &framework.FieldSchema{Type: framework.TypeString, Default: jobStatusAll,
		Description: "Which secrets to rotate: all (default), overdue, or due_soon (inside the alert threshold, overdue included). " +
			"Judged when the job reaches each secret."}
	return &framework.Path{
		Pattern:      "rotate/bulk",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "rotate", OperationSuffix: "bulk"},
		Fields:       fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.handle(b.startBulkJob),
				Summary:                     "Start a job that rotates every secret matching the filters.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    "Rotate many secrets in the background, for example after an incident.",
		HelpDescription: strings.TrimSpace(jobHelp),
	}
}

// pathRotateTenant rotates every secret of one tenant, as a job.
func pathRotateTenant(b *backend) *framework.Path {
	fields := jobFields()
	fields["tenant"] = tenantField()
	return &framework.Path{
		Pattern:      "rotate-tenant/" + tenantSegment,
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "rotate", OperationSuffix: "tenant"},
		Fields:       fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.handle(b.startTenantJob),
				Summary:                     "Start a job that rotates every secret of a tenant, for example after an incident.",
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    "Rotate every secret of one tenant in the background.",
		HelpDescription: strings.TrimSpace(jobHelp),
	}
}

func pathRotateJobs(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "rotate/jobs/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "rotation_jobs"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{
					Callback: b.handle(b.listJobs),
					Summary:  "List rotation jobs, with state and counts in key_info.",
				},
			},
			HelpSynopsis: "Rotation jobs started by rotate/bulk and rotate-tenant.",
		},
		{
			Pattern:      "rotate/jobs/" + framework.GenericNameRegex("job_id"),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "rotation_job"},
			Fields: map[string]*framework.FieldSchema{
				"job_id": {Type: framework.TypeString, Required: true, Description: "Job id, as returned when the job started."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.handle(b.readJob),
					Summary:  "Read a rotation job: state, total, done, failed, per-secret errors.",
				},
			},
			HelpSynopsis: "One rotation job.",
		},
	}
}

func (b *backend) startBulkJob(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	j, err := jobFrom(b, req, d, "bulk")
	if err != nil {
		return nil, err
	}
	if j.Filter.Tenant = strings.TrimSpace(d.Get("tenant").(string)); j.Filter.Tenant != "" {
		if err := validateIdentifier("tenant", j.Filter.Tenant); err != nil {
			return nil, err
		}
	}
	switch j.Filter.Status = strings.TrimSpace(d.Get("status").(string)); j.Filter.Status {
	case jobStatusAll, jobStatusOverdue, jobStatusDueSoon:
	default:
		return nil, badInput("status must be one of %s, %s, %s (got %s)", jobStatusAll, jobStatusOverdue, jobStatusDueSoon, quoteShort(j.Filter.Status))
	}
	return b.startJob(ctx, req, j)
}

func (b *backend) startTenantJob(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	j, err := jobFrom(b, req, d, "tenant")
	if err != nil {
		return nil, err
	}
	j.Filter.Tenant, j.Filter.Status = d.Get("tenant").(string), jobStatusAll
	if err := validateIdentifier("tenant", j.Filter.Tenant); err != nil {
		return nil, err
	}
	return b.startJob(ctx, req, j)
}

// jobFrom reads what every job takes: reason, incident_id, revoke_previous
// and types.
func jobFrom(b *backend, req *logical.Request, d *framework.FieldData, typ string) (*job, error) {
	r, err := rotationFrom(req, d)
	if err != nil {
		return nil, err
	}
	kinds, err := b.kindsNamed("types", d.Get("types").([]string))
	if err != nil {
		return nil, err
	}
	j := &job{Type: typ, Trigger: r.Trigger, Reason: r.Reason, IncidentID: r.IncidentID, RevokePrevious: r.RevokePrevious, Actor: r.Actor}
	if len(d.Get("types").([]string)) > 0 {
		for _, k := range kinds {
			j.Filter.Types = append(j.Filter.Types, k.Name)
		}
	}
	return j, nil
}

func (b *backend) startJob(ctx context.Context, req *logical.Request, j *job) (*logical.Response, error) {
	if err := b.createJob(ctx, req.Storage, j); err != nil {
		return nil, err
	}
	resp := &logical.Response{Data: j.view()}
	if j.IncidentID == "" {
		resp.AddWarning("no incident_id given: the rotations are recorded as manual and flagged no_incident in each secret's history")
	}
	resp.AddWarning(fmt.Sprintf("the job runs in the background; follow it at rotate/jobs/%s", j.ID))
	return resp, nil
}

func (b *backend) readJob(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	j, err := loadJob(ctx, req.Storage, d.Get("job_id").(string))
	if err != nil || j == nil {
		return nil, err
	}
	return &logical.Response{Data: j.view()}, nil
}

func (b *backend) listJobs(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	ids, err := listChildren(ctx, req.Storage, jobsPrefix)
	if err != nil {
		return nil, err
	}
	info := make(map[string]interface{}, len(ids))
	for _, id := range ids {
		j, err := loadJob(ctx, req.Storage, id)
		if err != nil || j == nil {
			continue
		}
		info[id] = map[string]interface{}{
			"type": j.Type, "state": j.State, "created_time": formatTime(j.Created), "incident_id": j.IncidentID,
			"total": j.Total, "done": j.Done, "failed": j.Failed,
		}
	}
	return logical.ListResponseWithInfo(ids, info), nil
}

const jobHelp = `
Starts a rotation job and returns its job_id at once; the job runs in the
background on the active node. Read rotate/jobs/{job_id} for its state
(planning, running, succeeded, completed_with_errors), total, done, rotated,
skipped, failed and the per-secret errors (the first 100). LIST rotate/jobs
shows every job kept (the newest 200 finished ones and all unfinished).

Jobs survive a restart, a seal and a failover and resume where they
stopped; a resumed job never rotates a secret twice. A secret whose own
rotation was interrupted is retried after Vault's rollback has settled it
(deferred, retry_after). Jobs run one at a time,
each rotating job_concurrency secrets at once (config). With an incident_id
the rotations are recorded with trigger "event"; without one they are
recorded as manual and flagged no_incident.
`
