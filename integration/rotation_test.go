package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Rotation by Vault itself: the periodic call rotates what is due with no
// client request, and rotation jobs run in the background, through a
// kill -9 of the server.

// Vault's rollback manager calls the engine's periodic function about once
// a minute; a secret due now is rotated by the next call.
const periodicLimit = 3 * time.Minute

// pollEvery is poll with a chosen interval, for waits of minutes where a
// request every 200 ms would only fill the logs.
func pollEvery(limit, interval time.Duration, check func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := check()
		if err == nil || errors.Is(err, errStop) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still not done after %s: %w", limit, err)
		}
		time.Sleep(interval) // polling interval, not synchronisation
	}
}

func TestRotation_PeriodicRotatesDueSecretWithoutARequest(t *testing.T) {
	t.Parallel() // waits for Vault's clock; runs beside the other waits
	l := client.Logical()
	path := mount + "/smtp/rot-time/mail-1"
	in := map[string]interface{}{
		"username": "time@example.com", "host": "smtp.example.com",
		// No lower bound on the period: 1 second is due by the next call.
		"rotation_period": 1, "auto_rotate": true,
	}
	if _, err := l.Write(path, in); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := pollEvery(periodicLimit, 2*time.Second, func() error {
		s, err := readRaw(l, path, nil)
		if err != nil {
			return err
		}
		if v := jsonInt(s.Data["current_version"]); v < 2 {
			return fmt.Errorf("current_version %d", v)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("no periodic rotation: %v", err)
	}
	t.Logf("rotated in the background (periodic call or the worker it started) %s after the write", time.Since(start).Round(time.Second))

	row := historyRow(t, path, func(r map[string]interface{}) bool { return jsonInt(r["to_version"]) == 2 })
	actor, _ := row["actor"].(map[string]interface{})
	if row["operation"] != "rotate" || row["trigger"] != "time" || jsonInt(row["from_version"]) != 1 ||
		row["result"] != "success" || actor["display_name"] != "penguinmails-scheduler" {
		t.Fatalf("history row of version 2 = %v, want a successful time-triggered rotate from 1 by the scheduler", row)
	}
}

func TestRotation_BulkJobRotatesEverySecret(t *testing.T) {
	t.Parallel()
	const tenant, n = "rot-bulk", 500
	paths := writeSMTPSecrets(t, client, func(i int) string { return fmt.Sprintf("%s/smtp/%s/mail-%03d", mount, tenant, i) }, n)

	id := startJob(t, client, mount+"/rotate/bulk", map[string]interface{}{
		"tenant": tenant, "types": "smtp", "reason": "integration bulk",
	})
	job := waitJob(t, client, id, 2*time.Minute)
	if job["state"] != "succeeded" || jsonInt(job["total"]) != n || jsonInt(job["rotated"]) != n || jsonInt(job["failed"]) != 0 {
		t.Fatalf("job = %v, want succeeded with %d rotated", job, n)
	}
	checkRotatedOnceByJob(t, client, paths, id)
}

// rotate-tenant starts a job and answers at once with its id.
func TestRotation_TenantRotationIsAJob(t *testing.T) {
	t.Parallel()
	const tenant = "rot-tenant"
	paths := writeSMTPSecrets(t, client, func(i int) string { return fmt.Sprintf("%s/smtp/%s/mail-%d", mount, tenant, i) }, 3)
	id := startJob(t, client, mount+"/rotate-tenant/"+tenant, map[string]interface{}{"incident_id": "INC-IT-1"})
	job := waitJob(t, client, id, time.Minute)
	if job["state"] != "succeeded" || job["type"] != "tenant" || jsonInt(job["rotated"]) != len(paths) {
		t.Fatalf("job = %v, want a succeeded tenant job with %d rotated", job, len(paths))
	}
	checkRotatedOnceByJob(t, client, paths, id)
}

// A job survives kill -9 of a single-node Vault on integrated storage in the
// middle of its run: after the restart it resumes, and every secret ends
// with exactly one new current version, none rotated twice, none lost.
func TestRotation_BulkJobResumesAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own Vault on Raft and rotates 3,000 secrets (about 2 minutes)")
	}
	t.Parallel()
	const n, killAfter = 3000, 200
	c := startRaftNode(t)
	node := c.nodes[0]
	// 750 tenants of 4.
	written := time.Now()
	paths := writeSMTPSecrets(t, node.client, func(i int) string { return fmt.Sprintf("%s/smtp/kill-%03d/mail-%d", mount, i/4, i%4) }, n)
	t.Logf("wrote %d secrets in %s", n, time.Since(written).Round(time.Second))

	id := startJob(t, node.client, mount+"/rotate/bulk", map[string]interface{}{"reason": "kill -9 test"})
	var at map[string]interface{}
	err := poll(2*time.Minute, func() error {
		job, err := readJob(node.client, id)
		if err != nil {
			return err
		}
		done, total := jsonInt(job["done"]), jsonInt(job["total"])
		if job["state"] != "running" && job["state"] != "planning" {
			return stopPolling(fmt.Errorf("job ended before the kill: %v", job))
		}
		// Killed after some progress was stored, well before the end.
		if job["state"] != "running" || done < killAfter || done >= total {
			return fmt.Errorf("state %v, done %d of %d", job["state"], done, total)
		}
		at = job
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	node.srv.kill()
	t.Logf("killed Vault (SIGKILL) with the job at %d of %d", jsonInt(at["done"]), jsonInt(at["total"]))

	c.restart(t, node)
	c.waitActive(t, node)
	restarted := time.Now()
	job := waitJob(t, node.client, id, periodicLimit)
	t.Logf("the job finished %s after the restart", time.Since(restarted).Round(time.Second))
	if job["state"] != "succeeded" || jsonInt(job["total"]) != n || jsonInt(job["rotated"]) != n ||
		jsonInt(job["failed"]) != 0 || jsonInt(job["skipped"]) != 0 {
		t.Fatalf("job = %v, want succeeded with all %d rotated", job, n)
	}
	checkRotatedOnceByJob(t, node.client, paths, id)
	list, err := node.client.Logical().List(mount + "/smtp/kill-000")
	if err != nil || list == nil || len(list.Data["keys"].([]interface{})) != 4 {
		t.Fatalf("list of a tenant after the restart: %v %v", list, err)
	}
}

// startRaftNode starts one Vault server on integrated storage (not dev
// mode), initialised, unsealed and with the plugin mounted; t stops it.
func startRaftNode(t *testing.T) *cluster {
	t.Helper()
	work := t.TempDir()
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{}
	t.Cleanup(func() { c.stop(t) })
	n, err := newClusterNode(filepath.Join(work, "single"), 1, ports[0], ports[1])
	if err != nil {
		t.Fatal(err)
	}
	c.nodes = append(c.nodes, n)
	c.start(t, n)
	c.initialize(t, n)
	c.unseal(t, n)
	c.waitActive(t, n)
	if err := registerAndMount(func(args ...string) (string, error) { return c.cli(n, args...) }); err != nil {
		t.Fatal(err)
	}
	return c
}

// writeSMTPSecrets creates n SMTP credentials (generated passwords) at
// pathOf(0..n-1), eight requests at a time, and returns their paths.
func writeSMTPSecrets(t *testing.T, c *api.Client, pathOf func(int) string, n int) []string {
	t.Helper()
	paths := make([]string, n)
	for i := range paths {
		paths[i] = pathOf(i)
	}
	err := forEachParallel(paths, func(p string) error {
		_, err := c.Logical().Write(p, map[string]interface{}{"username": "bulk@example.com", "host": "smtp.example.com"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// forEachParallel calls fn on every item, eight at a time, and returns the
// first error.
func forEachParallel(items []string, fn func(string) error) error {
	work := make(chan string)
	errs := make(chan error, len(items))
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := fn(it); err != nil {
					errs <- fmt.Errorf("%s: %w", it, err)
				}
			}
		}()
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs // nil when the channel is empty
}

func startJob(t *testing.T, c *api.Client, path string, data map[string]interface{}) string {
	t.Helper()
	s, err := c.Logical().Write(path, data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	id, _ := s.Data["job_id"].(string)
	if id == "" {
		t.Fatalf("%s answered no job_id: %v", path, s.Data)
	}
	return id
}

func readJob(c *api.Client, id string) (map[string]interface{}, error) {
	s, err := readRaw(c.Logical(), mount+"/rotate/jobs/"+id, nil)
	if err != nil {
		return nil, err
	}
	return s.Data, nil
}

// waitJob polls a job until it has finished, and returns what it shows.
func waitJob(t *testing.T, c *api.Client, id string, limit time.Duration) map[string]interface{} {
	t.Helper()
	var job map[string]interface{}
	err := poll(limit, func() error {
		var err error
		if job, err = readJob(c, id); err != nil {
			return err
		}
		if st := job["state"]; st != "succeeded" && st != "completed_with_errors" {
			return fmt.Errorf("state %v, done %d of %d", st, jsonInt(job["done"]), jsonInt(job["total"]))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
	return job
}

// checkRotatedOnceByJob fails unless every secret is at version 2 with one
// active version, and its history has exactly one rotate row of the job.
func checkRotatedOnceByJob(t *testing.T, c *api.Client, paths []string, jobID string) {
	t.Helper()
	err := forEachParallel(paths, func(p string) error {
		s, err := readRaw(c.Logical(), p, nil)
		if err != nil {
			return err
		}
		active := 0
		versions, _ := s.Data["versions"].(map[string]interface{})
		for _, v := range versions {
			if v.(map[string]interface{})["status"] == "active" {
				active++
			}
		}
		if cur := jsonInt(s.Data["current_version"]); cur != 2 || active != 1 {
			return fmt.Errorf("current_version %d with %d active versions, want 2 and 1", cur, active)
		}
		h, err := readRaw(c.Logical(), p+"/history", nil)
		if err != nil {
			return err
		}
		rows := 0
		for _, r := range h.Data["history"].([]interface{}) {
			row := r.(map[string]interface{})
			if row["operation"] == "rotate" && row["job_id"] == jobID {
				rows++
			}
		}
		if rows != 1 {
			return fmt.Errorf("%d rotate rows of job %s in the history, want 1", rows, jobID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// historyRow returns the first history row of the secret at path that
// match accepts.
func historyRow(t *testing.T, path string, match func(map[string]interface{}) bool) map[string]interface{} {
	t.Helper()
	h, err := readRaw(client.Logical(), path+"/history", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range h.Data["history"].([]interface{}) {
		if row := r.(map[string]interface{}); match(row) {
			return row
		}
	}
	t.Fatalf("no matching history row in %v", h.Data["history"])
	return nil
}

// jsonInt reads a number from a decoded response (json.Number or float64).
func jsonInt(v interface{}) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	case int:
		return n
	}
	return -1
}
