package penguinmails

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	uuid "github.com/hashicorp/go-uuid"
	"github.com/hashicorp/vault/sdk/logical"
)

// Rotation jobs: bulk and tenant rotations run in the background, so that
// incident response over 10,000 tenants is one call that returns at once.
// A job first plans (lists the secrets it will rotate into chunks of
// jobChunkSize paths, in sorted order), then rotates them, jobConcurrency
// at a time. Plan and progress are stored after every step, so a job
// survives a restart, a seal or a failover and resumes where it stopped; a
// secret records the job that rotated it (last_job), so a resumed job
// rotates nothing twice.
const (
	jobsPrefix      = "jobs/"      // jobs/{id}
	jobPlansPrefix  = "job-plans/" // job-plans/{id}/{chunk}
	jobQueuePrefix  = "job-queue/" // job-queue/{created}:{id}, unfinished jobs
	jobChunkSize    = 1000
	jobErrorsKept   = 100
	finishedJobKept = 200
)

// Job states.
const (
	jobPlanning  = "planning"
	jobRunning   = "running"
	jobSucceeded = "succeeded"
	jobFailed    = "completed_with_errors"
)

// Job status filters: which secrets a bulk job rotates.
const (
	jobStatusAll     = "all"
	jobStatusOverdue = "overdue"
	jobStatusDueSoon = "due_soon"
)

type jobFilter struct {
	Types  []string `json:"types,omitempty"`
	Tenant string   `json:"tenant,omitempty"`
	Status string   `json:"status"`
}

type jobError struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

type job struct {
	ID             string    `json:"id"`
	Type           string    `json:"type"` // bulk or tenant
	State          string    `json:"state"`
	Filter         jobFilter `json:"filter"`
	Trigger        string    `json:"trigger"`
	Reason         string    `json:"reason,omitempty"`
	IncidentID     string    `json:"incident_id,omitempty"`
	RevokePrevious bool      `json:"revoke_previous,omitempty"`
	Actor          actor     `json:"actor"`
	Created        time.Time `json:"created"`
	Updated        time.Time `json:"updated"`
	Finished       time.Time `json:"finished,omitempty"`

	Total   int        `json:"total"`
	Done    int        `json:"done"`
	Rotated int        `json:"rotated"`
	Skipped int        `json:"skipped"`
	Failed  int        `json:"failed"`
	Errors  []jobError `json:"errors,omitempty"`

	// Planning cursor: the last planned path, and the chunks written.
	PlanAfter string `json:"plan_after,omitempty"`
	Chunks    int    `json:"chunks"`
	// Run cursor: the chunk and the offset in it of the next item.
	Chunk  int `json:"chunk"`
	Offset int `json:"offset"`
	// Deferred are secrets met with an interrupted rotation (a crash in a
	// set step): they are retried once Vault's rollback has settled them,
	// not before RetryAfter.
	Deferred   []string  `json:"deferred,omitempty"`
	RetryAfter time.Time `json:"retry_after,omitempty"`
}

func (j *job) queueKey() string {
	return jobQueuePrefix + fmt.Sprintf("%020d", j.Created.UnixNano()) + ":" + j.ID
}

func (j *job) finished() bool { return j.State == jobSucceeded || j.State == jobFailed }

func loadJob(ctx context.Context, s logical.Storage, id string) (*job, error) {
	raw, err := s.Get(ctx, jobsPrefix+id)
	if err != nil || raw == nil {
		return nil, err
	}
	var j job
	if err := raw.DecodeJSON(&j); err != nil {
		return nil, fmt.Errorf("decoding job %s: %w", id, err)
	}
	return &j, nil
}

func saveJob(ctx context.Context, s logical.Storage, j *job) error {
	entry, err := logical.StorageEntryJSON(jobsPrefix+j.ID, j)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

// createJob stores a new job and queues it. The worker starts it.
func (b *backend) createJob(ctx context.Context, s logical.Storage, j *job) error {
	id, err := uuid.GenerateUUID()
	if err != nil {
		return err
	}
	now := b.now()
	j.ID, j.State, j.Created, j.Updated = id, jobPlanning, now, now
	if err := saveJob(ctx, s, j); err != nil {
		return err
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: j.queueKey()}); err != nil {
		return err
	}
	if err := b.pruneJobs(ctx, s); err != nil {
		b.Logger().Warn("pruning finished jobs failed", "error", err)
	}
	b.ensureWorker(s)
	return nil
}

// pruneJobs keeps the newest finishedJobKept finished jobs.
func (b *backend) pruneJobs(ctx context.Context, s logical.Storage) error {
	ids, err := s.List(ctx, jobsPrefix)
	if err != nil || len(ids) <= finishedJobKept {
		return err
	}
	var done []*job
	for _, id := range ids {
		j, err := loadJob(ctx, s, id)
		if err != nil {
			return err
		}
		if j != nil && j.finished() {
			done = append(done, j)
		}
	}
	sort.Slice(done, func(a, c int) bool { return done[a].Created.After(done[c].Created) })
	for _, j := range done[min(len(done), finishedJobKept):] {
		if err := deleteJob(ctx, s, j); err != nil {
			return err
		}
	}
	return nil
}

func deleteJob(ctx context.Context, s logical.Storage, j *job) error {
	for c := 0; c < j.Chunks; c++ {
		if err := s.Delete(ctx, planKey(j.ID, c)); err != nil {
			return err
		}
	}
	return s.Delete(ctx, jobsPrefix+j.ID)
}

func planKey(id string, chunk int) string { return fmt.Sprintf("%s%s/%06d", jobPlansPrefix, id, chunk) }

// runJobs advances the oldest unfinished job by about budget items (one
// plan chunk, or budget rotations). Jobs run one at a time, in the order
// they were created. It reports whether work is left.
func (b *backend) runJobs(ctx context.Context, s logical.Storage, budget int) (bool, error) {
	queue, err := listChildren(ctx, s, jobQueuePrefix)
	if err != nil || len(queue) == 0 {
		return false, err
	}
	id := queue[0][strings.Index(queue[0], ":")+1:]
	j, err := loadJob(ctx, s, id)
	if err != nil {
		return true, err
	}
	if j == nil || j.finished() {
		return len(queue) > 1, s.Delete(ctx, jobQueuePrefix+queue[0])
	}
	if j.State == jobPlanning {
		err = b.planJob(ctx, s, j)
	} else {
		err = b.advanceJob(ctx, s, j, budget)
	}
	if errors.Is(err, errJobWaiting) {
		return false, nil // not busy: the next tick looks again
	}
	if err != nil {
		return true, err
	}
	if j.finished() {
		if err := s.Delete(ctx, j.queueKey()); err != nil {
			return true, err
		}
		b.Logger().Info("rotation job finished", "job", j.ID, "state", j.State, "rotated", j.Rotated, "failed", j.Failed, "skipped", j.Skipped)
		return len(queue) > 1, nil
	}
	return true, nil
}

// planJob writes the next plan chunk: up to jobChunkSize secret paths after
// the plan cursor, in (type, tenant, name) order.
func (b *backend) planJob(ctx context.Context, s logical.Storage, j *job) error {
	kinds, err := b.kindsNamed("types", j.Filter.Types)
	if err != nil {
		return err
	}
	sort.Slice(kinds, func(a, c int) bool { return kinds[a].Name < kinds[c].Name }) // the cursor's order
	var chunk []string
	afterKind, afterTenant, afterName := splitPlanPath(j.PlanAfter)
	for _, k := range kinds {
		if k.Name < afterKind || len(chunk) >= jobChunkSize {
			continue
		}
		tenants, err := b.jobTenants(ctx, s, j, k.Name)
		if err != nil {
			return err
		}
		if k.Name == afterKind {
			// Resume at the cursor's tenant: a linear skip would walk every
			// tenant before it once per chunk.
			tenants = tenants[sort.SearchStrings(tenants, afterTenant):]
		}
		for _, t := range tenants {
			if len(chunk) >= jobChunkSize {
				break
			}
			names, err := listChildren(ctx, s, secretsStoragePrefix+k.Name+"/"+t+"/")
			if err != nil {
				return err
			}
			for _, n := range names {
				if k.Name == afterKind && t == afterTenant && n <= afterName {
					continue
				}
				chunk = append(chunk, k.Name+"/"+t+"/"+n)
				if len(chunk) >= jobChunkSize {
					break
				}
			}
		}
	}
	if len(chunk) > 0 {
		entry, err := logical.StorageEntryJSON(planKey(j.ID, j.Chunks), chunk)
		if err != nil {
			return err
		}
		if err := s.Put(ctx, entry); err != nil {
			return err
		}
		j.Chunks++
		j.Total += len(chunk)
		j.PlanAfter = chunk[len(chunk)-1]
	}
	if len(chunk) < jobChunkSize {
		j.State = jobRunning
		b.jobTenantCache.Delete(j.ID)
	}
	j.Updated = b.now()
	if j.State == jobRunning && j.Total == 0 {
		b.finishJob(j)
	}
	return saveJob(ctx, s, j)
}

func splitPlanPath(p string) (kind, tenant, name string) {
	parts := strings.SplitN(p, "/", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return parts[0], parts[1], parts[2]
}

// jobTenants lists the tenants a job covers for one kind; the list of all
// tenants is read once per kind and kept while the job plans.
func (b *backend) jobTenants(ctx context.Context, s logical.Storage, j *job, kind string) ([]string, error) {
	if j.Filter.Tenant != "" {
		return []string{j.Filter.Tenant}, nil
	}
	if c, ok := b.jobTenantCache.Load(j.ID); ok {
		if tl := c.(*tenantList); tl.kind == kind {
			return tl.tenants, nil
		}
	}
	tenants, err := listChildren(ctx, s, secretsStoragePrefix+kind+"/")
	if err != nil {
		return nil, err
	}
	b.jobTenantCache.Store(j.ID, &tenantList{kind: kind, tenants: tenants})
	return tenants, nil
}

// advanceJob rotates up to budget items of the current chunk, concurrency
// at a time, and stores the progress after each group.
func (b *backend) advanceJob(ctx context.Context, s logical.Storage, j *job, budget int) error {
	cfg, err := b.config(ctx, s)
	if err != nil {
		return err
	}
	conc := cfg.JobConcurrency
	if conc < 1 {
		conc = 1
	}
	// The chunk is decoded once per pass, not once per group: a chunk
	// holds jobChunkSize paths and a group only JobConcurrency.
	var paths []string
	loaded := -1
	for budget > 0 && ctx.Err() == nil && !j.finished() {
		if j.Chunk >= j.Chunks {
			return b.retryDeferred(ctx, s, j, conc)
		}
		if loaded != j.Chunk {
			if paths, err = loadPlan(ctx, s, j.ID, j.Chunk); err != nil {
				return err
			}
			loaded = j.Chunk
		}
		if j.Offset >= len(paths) {
			j.Chunk, j.Offset = j.Chunk+1, 0
			continue
		}
		group := paths[j.Offset:min(len(paths), j.Offset+conc)]
		results := b.rotateGroup(ctx, s, j, group)
		if ctx.Err() != nil {
			return nil // the group is redone on resume; last_job skips what finished
		}
		for i, res := range results {
			b.countOrDefer(j, group[i], res)
		}
		j.Offset += len(group)
		budget -= len(group)
		j.Updated = b.now()
		if err := saveJob(ctx, s, j); err != nil {
			return err
		}
	}
	return nil
}

// countOrDefer counts one item's result, or keeps the item for later when an
// interrupted rotation of it waits for Vault's rollback.
func (b *backend) countOrDefer(j *job, path string, err error) {
	var busy *inProgress
	if errors.As(err, &busy) && len(j.Deferred) < jobChunkSize {
		j.Deferred = append(j.Deferred, path)
		j.RetryAfter = b.now().Add(walRollbackMinAge + time.Minute)
		return
	}
	j.count(path, err)
}

// retryDeferred runs the deferred items once the rollback has had its turn;
// a second interruption counts as a failure. With nothing deferred the job
// is finished.
func (b *backend) retryDeferred(ctx context.Context, s logical.Storage, j *job, conc int) error {
	if len(j.Deferred) == 0 {
		b.finishJob(j)
		return saveJob(ctx, s, j)
	}
	if b.now().Before(j.RetryAfter) {
		return errJobWaiting
	}
	group := j.Deferred[:min(len(j.Deferred), conc)]
	results := b.rotateGroup(ctx, s, j, group)
	if ctx.Err() != nil {
		return nil
	}
	for i, res := range results {
		j.count(group[i], res)
	}
	j.Deferred = append([]string(nil), j.Deferred[len(group):]...)
	j.Updated = b.now()
	return saveJob(ctx, s, j)
}

// errJobWaiting stops a pass on a job that waits for the rollback; the next
// tick looks again.
var errJobWaiting = errors.New("job waits for Vault's rollback")

func loadPlan(ctx context.Context, s logical.Storage, id string, chunk int) ([]string, error) {
	raw, err := s.Get(ctx, planKey(id, chunk))
	if err != nil || raw == nil {
		return nil, err
	}
	var paths []string
	return paths, raw.DecodeJSON(&paths)
}

// rotateGroup rotates the secrets of one group at the same time.
func (b *backend) rotateGroup(ctx context.Context, s logical.Storage, j *job, paths []string) []error {
	results := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		go func(i int, p string) {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					results[i] = fmt.Errorf("internal error")
				}
			}()
			results[i] = b.rotateForJob(ctx, s, j, p)
		}(i, p)
	}
	wg.Wait()
	return results
}

func (b *backend) rotateForJob(ctx context.Context, s logical.Storage, j *job, path string) error {
	kind, tenant, name := splitPlanPath(path)
	k := b.kinds[kind]
	if k == nil {
		return &skipped{"type no longer served"}
	}
	r := rotation{Trigger: j.Trigger, Reason: j.Reason, IncidentID: j.IncidentID, Actor: j.Actor,
		RevokePrevious: j.RevokePrevious, JobID: j.ID, NoIncident: j.IncidentID == "", only: j.Filter.only()}
	e, err := b.rotate(ctx, s, secretRef{kind: k, tenant: tenant, name: name}, r)
	if err == nil && e == nil {
		return &skipped{"deleted since the job was planned"}
	}
	return err
}

// only turns the job's status filter into the check made under each
// secret's lock, at the time it is reached.
func (f jobFilter) only() func(e *secretEntry, pol typePolicy, now time.Time) string {
	switch f.Status {
	case jobStatusOverdue:
		return func(e *secretEntry, pol typePolicy, now time.Time) string {
			if e.rotationStatus(pol, now) != rotationOverdue {
				return "not overdue"
			}
			return ""
		}
	case jobStatusDueSoon:
		return func(e *secretEntry, pol typePolicy, now time.Time) string {
			if st := e.rotationStatus(pol, now); st != rotationOverdue && st != rotationDueSoon {
				return "not due soon"
			}
			return ""
		}
	}
	return nil
}

// count adds one item's result to the job.
func (j *job) count(path string, err error) {
	j.Done++
	switch sk, isSkip := err.(*skipped); {
	case err == nil:
		j.Rotated++
	case isSkip && sk.why == "already rotated by this job":
		j.Rotated++ // rotated before a restart, counted now
	case isSkip:
		j.Skipped++
	default:
		j.Failed++
		if len(j.Errors) < jobErrorsKept {
			j.Errors = append(j.Errors, jobError{Path: path, Error: err.Error()})
		}
	}
}

func (b *backend) finishJob(j *job) {
	j.State = jobSucceeded
	if j.Failed > 0 {
		j.State = jobFailed
	}
	j.Finished = b.now()
	j.Updated = j.Finished
}

// view is what rotate/jobs/{id} shows.
func (j *job) view() map[string]interface{} {
	errs := make([]interface{}, 0, len(j.Errors))
	for _, e := range j.Errors {
		errs = append(errs, map[string]interface{}{"path": e.Path, "error": e.Error})
	}
	return map[string]interface{}{
		"job_id": j.ID, "type": j.Type, "state": j.State,
		"types": j.Filter.Types, "tenant": j.Filter.Tenant, "status": j.Filter.Status,
		"trigger": j.Trigger, "reason": j.Reason, "incident_id": j.IncidentID, "revoke_previous": j.RevokePrevious,
		"started_by": j.Actor.view(), "created_time": formatTime(j.Created), "updated_time": formatTime(j.Updated),
		"finished_time": formatTime(j.Finished), "planned": j.State != jobPlanning,
		"total": j.Total, "done": j.Done, "rotated": j.Rotated, "skipped": j.Skipped, "failed": j.Failed,
		"errors": errs, "errors_truncated": j.Failed > len(j.Errors),
		"deferred": len(j.Deferred), "retry_after": formatTime(j.RetryAfter),
	}
}
