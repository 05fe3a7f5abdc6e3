package integration

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

const (
	haStaticPath   = mount + "/smtp/ha-tenant/static"
	haRotatingPath = mount + "/smtp/ha-tenant/rotating"
	// Only read after the failover: the new active node's scheduler can
	// find it due in storage alone, not from a write it served itself.
	haUntouchedPath = mount + "/smtp/ha-tenant/untouched"

	// Vault's rollback manager calls the PeriodicFunc once a minute on the
	// active node, a minute after that node became active; three minutes
	// leave room for a slow machine.
	scheduledRotationLimit = 3 * time.Minute

	// Vault's gRPC client logs every request to the plugin at trace level;
	// the periodic call is the only one with an empty path in these tests.
	periodicCallLog = `vault-plugin-penguinmails: handle request: transport=gRPC path="" status=started`
	// logical.ErrReadOnly, what a write on a node that must not write gets.
	readOnlyLog = "cannot write to readonly storage"
	// The plugin's warning when a scheduled rotation fails.
	rotationFailedLog = "scheduled rotation failed"
)

// TestCluster_HA runs the engine on a three-node Vault HA cluster on
// integrated Raft storage and checks the rules for HA: writes through a
// standby reach the active node, periodic work runs only where writes are
// safe, and nothing is lost when the active node is killed or restarted.
// Each step needs the state the previous one left.
func TestCluster_HA(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Raft cluster and waits for Vault's once-a-minute periodic calls")
	}
	s := &haScenario{c: startCluster(t), versions: map[string]int{}}
	s.active = s.c.nodes[0]
	for _, step := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"WritesThroughStandbyAreForwarded", s.writeThroughStandby},
		{"StandbyReadsShowTheLatestWrite", s.standbyReadsLatest},
		{"ScheduledRotationRunsOnActiveOnly", s.scheduledRotationOnActive},
		{"JobRunsWhenActiveIsKilled", s.startJobBeforeKill},
		{"HardKillOfActiveLosesNothing", s.killActive},
		{"JobResumesOnNewActive", s.jobResumesAfterFailover},
		{"KilledNodeRestarts", s.restartKilled},
		{"ScheduledRotationContinuesOnNewActive", s.scheduledRotationAfterFailover},
		{"RestartedNodeRejoinsWithLatestData", s.restartedNodeRejoins},
	} {
		if !t.Run(step.name, step.run) {
			return
		}
	}
}

var (
	haAutoRotated = []string{haRotatingPath, haUntouchedPath}
	haAllPaths    = []string{haStaticPath, haRotatingPath, haUntouchedPath}
)

// haScenario is the state the steps of TestCluster_HA hand on.
type haScenario struct {
	c        *cluster
	active   *clusterNode
	killed   *clusterNode
	versions map[string]int // current version of each auto-rotated secret
	// A bulk job that runs across the failover, over its own tenant.
	jobID    string
	jobPaths []string
}

// haJobSecrets is the size of the job that runs across the failover: large
// enough that the active node is killed in the middle of it.
const haJobSecrets = 2000

// startJobBeforeKill starts a bulk job over a tenant of its own and waits
// until it has made some progress, so that the kill lands in the middle.
func (s *haScenario) startJobBeforeKill(t *testing.T) {
	s.jobPaths = writeSMTPSecrets(t, s.active.client, func(i int) string { return fmt.Sprintf("%s/smtp/ha-job/mail-%04d", mount, i) }, haJobSecrets)
	s.jobID = startJob(t, s.active.client, mount+"/rotate/bulk", map[string]interface{}{
		"tenant": "ha-job", "reason": "failover test", "incident_id": "INC-HA"})
	err := poll(2*time.Minute, func() error {
		job, err := readJob(s.active.client, s.jobID)
		if err != nil {
			return err
		}
		if job["state"] == "succeeded" || job["state"] == "completed_with_errors" {
			return stopPolling(fmt.Errorf("the job ended before the kill: %v", job))
		}
		if done := jsonInt(job["done"]); job["state"] != "running" || done < 50 {
			return fmt.Errorf("state %v, done %d", job["state"], done)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// jobResumesAfterFailover checks that the new active node finishes the job
// the killed one was running, rotating every secret exactly once.
func (s *haScenario) jobResumesAfterFailover(t *testing.T) {
	started := time.Now()
	job := waitJob(t, s.active.client, s.jobID, scheduledRotationLimit)
	t.Logf("%s finished the job %s after the failover", s.active.id, time.Since(started).Round(time.Second))
	if job["state"] != "succeeded" || jsonInt(job["rotated"]) != haJobSecrets || jsonInt(job["failed"]) != 0 {
		t.Fatalf("job after the failover: %v", job)
	}
	checkRotatedOnceByJob(t, s.active.client, s.jobPaths, s.jobID)
}

// standbys are the running nodes other than the active one.
func (s *haScenario) standbys() []*clusterNode {
	var out []*clusterNode
	for _, n := range s.c.nodes {
		if n != s.active && !n.srv.exited() {
			out = append(out, n)
		}
	}
	return out
}

func (s *haScenario) writeThroughStandby(t *testing.T) {
	standby := s.standbys()[0]
	if h, err := standby.client.Sys().Health(); err != nil || !h.Standby {
		t.Fatalf("%s is not a standby: %+v %v", standby.id, h, err)
	}
	const password = "HA-static-Passw0rd-7f3c"
	rememberSecret(password)
	resp, err := standby.client.Logical().Write(haStaticPath, map[string]interface{}{
		"username": "ha@example.com", "password": password,
		"host": "smtp.example.com", "port": 587, "encryption": "starttls",
	})
	if err != nil || resp == nil || intField(resp.Data["version"]) != 1 {
		t.Fatalf("write through standby %s: %v %v", standby.id, resp, err)
	}
	for _, n := range s.c.nodes {
		got := readSecret(t, n.client, haStaticPath, 0)
		if got.Data["password"] != password || intField(got.Data["version"]) != 1 {
			t.Fatalf("read on %s: version %v, password matches: %t", n.id, got.Data["version"], got.Data["password"] == password)
		}
	}

	// Secrets the scheduler rotates: due a second after they are written.
	// max_versions keeps every version this test makes.
	for _, path := range haAutoRotated {
		resp, err = standby.client.Logical().Write(path, map[string]interface{}{
			"username": "rotating@example.com", "host": "smtp.example.com", "port": 587, "encryption": "starttls",
			"auto_rotate": true, "rotation_period": "1s", "max_versions": 20,
		})
		if err != nil || resp == nil || intField(resp.Data["version"]) != 1 {
			t.Fatalf("write of %s through %s: %v %v", path, standby.id, resp, err)
		}
		s.versions[path] = 1
	}
}

// standbyReadsLatest writes new versions on the active node and reads each
// at once through every standby: with the engine's entry cache warm, no
// node may answer an older version (Vault CE standbys forward reads to the
// active node, whose cache a write replaces).
func (s *haScenario) standbyReadsLatest(t *testing.T) {
	for _, n := range s.c.nodes {
		readSecret(t, n.client, haStaticPath, 0) // warm the cache
	}
	for i := 2; i <= 4; i++ {
		password := fmt.Sprintf("HA-latest-Passw0rd-%d-9b1e", i)
		rememberSecret(password)
		resp, err := s.active.client.Logical().Write(haStaticPath, map[string]interface{}{"password": password})
		if err != nil || resp == nil || intField(resp.Data["version"]) != i {
			t.Fatalf("write of version %d on %s: %v %v", i, s.active.id, resp, err)
		}
		for _, n := range s.standbys() {
			got := readSecret(t, n.client, haStaticPath, 0)
			if intField(got.Data["version"]) != i || got.Data["password"] != password {
				t.Fatalf("read on %s right after the write of version %d: version %v, password matches: %t",
					n.id, i, got.Data["version"], got.Data["password"] == password)
			}
		}
	}
}

func (s *haScenario) scheduledRotationOnActive(t *testing.T) {
	s.waitScheduledRotations(t)
	assertPeriodicWork(t, s.active, s.active.logs[len(s.active.logs)-1])
	for _, n := range s.standbys() {
		assertNoPeriodicWork(t, n, n.logs[len(n.logs)-1])
	}
}

// killActive kills the active node's process group, as a crash would, and
// checks that a new active node serves every version and the history
// exactly as they were, and can rotate.
func (s *haScenario) killActive(t *testing.T) {
	before := map[string]secretSnapshot{}
	for _, path := range haAllPaths {
		before[path] = snapshot(t, s.active.client, path)
	}
	// The job's background passes may have rotated the 1-second secrets
	// since they were counted: count from what the old active node shows.
	for _, path := range haAutoRotated {
		s.versions[path] = before[path].current
	}
	s.killed = s.active
	s.killed.srv.kill()
	s.active = s.c.waitNewActive(t, s.standbys())
	t.Logf("%s killed; %s is the new active node", s.killed.id, s.active.id)
	s.c.waitMountServed(t, append(s.standbys(), s.active))

	for _, n := range append(s.standbys(), s.active) {
		for path, want := range before {
			assertSameSnapshot(t, n.id+" "+path, want, snapshot(t, n.client, path))
		}
	}

	resp, err := s.active.client.Logical().Write(haRotatingPath+"/rotate", map[string]interface{}{"reason": "after failover"})
	if err != nil || resp == nil || intField(resp.Data["version"]) != s.versions[haRotatingPath]+1 {
		t.Fatalf("rotate through the new active %s: %v %v", s.active.id, resp, err)
	}
	s.versions[haRotatingPath]++
	newest := newestHistory(t, s.active.client, haRotatingPath)
	if newest["trigger"] != "manual" || newest["reason"] != "after failover" || intField(newest["to_version"]) != s.versions[haRotatingPath] {
		t.Fatalf("history after the manual rotation: %v", newest)
	}
}

// restartKilled starts the killed node again on its own config and data;
// the wait for the next periodic call then runs while it rejoins.
func (s *haScenario) restartKilled(t *testing.T) {
	s.c.restart(t, s.killed)
}

func (s *haScenario) scheduledRotationAfterFailover(t *testing.T) {
	s.waitScheduledRotations(t)
	assertPeriodicWork(t, s.active, s.active.logs[len(s.active.logs)-1])
	if len(s.standbys()) != 2 {
		t.Fatalf("want two standbys, the survivor and the restarted %s", s.killed.id)
	}
	for _, n := range s.standbys() {
		// The survivor was a standby all along; the restarted node is one
		// since its restart (its first log is from its time as active).
		assertNoPeriodicWork(t, n, n.logs[len(n.logs)-1])
	}
}

// restartedNodeRejoins checks that the restarted node is a voter again, that
// its own Raft log has caught up with the leader's, and that it serves the
// latest version.
func (s *haScenario) restartedNodeRejoins(t *testing.T) {
	s.c.waitVoters(t, s.active, s.c.nodes)
	leader, err := raftServer(s.active, s.active.id)
	if err != nil {
		t.Fatal(err)
	}
	leaderIndex := leader.LastIndex
	err = poll(peersLimit, func() error {
		st, err := raftServer(s.active, s.killed.id)
		if err != nil {
			return err
		}
		if !st.Healthy || st.LastIndex < leaderIndex {
			return fmt.Errorf("%s healthy=%t last_index=%d, leader was at %d", s.killed.id, st.Healthy, st.LastIndex, leaderIndex)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := s.killed.client.Sys().Health(); err != nil || h.Sealed || !h.Standby {
		t.Fatalf("%s after restart: %+v %v", s.killed.id, h, err)
	}
	for _, path := range haAllPaths {
		want := snapshot(t, s.active.client, path)
		assertSameSnapshot(t, s.killed.id+" "+path, want, snapshot(t, s.killed.client, path))
	}
	for path, want := range s.versions {
		if got := intField(readSecret(t, s.killed.client, path, 0).Data["version"]); got != want {
			t.Fatalf("%s serves version %d of %s, want %d", s.killed.id, got, path, want)
		}
	}
}

// waitScheduledRotations waits for the next scheduled rotation of every
// auto-rotated secret.
func (s *haScenario) waitScheduledRotations(t *testing.T) {
	t.Helper()
	for _, path := range haAutoRotated {
		s.versions[path] = waitScheduledRotation(t, s.active, path, s.versions[path])
	}
}

// waitScheduledRotation waits until the plugin's scheduler has rotated the
// secret past version from, checks how the history records that rotation,
// and returns the current version. On a loaded machine the scheduler may
// rotate more than once before a poll sees it, so the row checked is the
// one that left version from, not merely the newest.
func waitScheduledRotation(t *testing.T, n *clusterNode, path string, from int) int {
	t.Helper()
	start := time.Now()
	var rows []map[string]interface{}
	err := poll(scheduledRotationLimit, func() error {
		rows = history(t, n.client, path)
		if len(rows) == 0 || intField(rows[0]["to_version"]) <= from {
			return fmt.Errorf("newest history entry is still %v", rows)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("no scheduled rotation on %s: %v", n.id, err)
	}
	var row map[string]interface{}
	for _, r := range rows {
		if intField(r["from_version"]) == from && r["operation"] == "rotate" {
			row = r
		}
	}
	actor, _ := row["actor"].(map[string]interface{})
	if row == nil || row["trigger"] != "time" || actor["display_name"] != "penguinmails-scheduler" ||
		row["result"] != "success" || intField(row["to_version"]) != from+1 {
		t.Fatalf("history entry of the scheduled rotation from version %d: %v (history %v)", from, row, rows)
	}
	current := intField(rows[0]["to_version"])
	t.Logf("%s rotated %s from version %d after %s (now version %d)", n.id, path, from, time.Since(start).Round(time.Second), current)
	return current
}

// assertPeriodicWork checks that Vault called the plugin's PeriodicFunc on
// the active node and that no scheduled rotation failed there.
func assertPeriodicWork(t *testing.T, n *clusterNode, log string) {
	t.Helper()
	text := readFile(t, log)
	if !strings.Contains(text, periodicCallLog) {
		t.Errorf("%s is active but its log shows no periodic call to the plugin", n.id)
	}
	for _, bad := range []string{readOnlyLog, rotationFailedLog} {
		if strings.Contains(text, bad) {
			t.Errorf("%s's log has %q", n.id, bad)
		}
	}
}

// assertNoPeriodicWork checks that a standby neither ran the plugin's
// PeriodicFunc nor had a plugin write fail.
func assertNoPeriodicWork(t *testing.T, n *clusterNode, log string) {
	t.Helper()
	text := readFile(t, log)
	for _, bad := range []string{periodicCallLog, readOnlyLog, rotationFailedLog} {
		if strings.Contains(text, bad) {
			t.Errorf("standby %s's log has %q", n.id, bad)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "[ERROR]") && strings.Contains(line, pluginName) {
			t.Errorf("standby %s logged a plugin error: %s", n.id, line)
		}
	}
}

// secretSnapshot is all a read shows of one secret: every kept version
// with its secret material, the version metadata and the history.
type secretSnapshot struct {
	current   int
	passwords map[int]string
	versions  map[string]interface{}
	history   []map[string]interface{}
}

func snapshot(t *testing.T, c *api.Client, path string) secretSnapshot {
	t.Helper()
	cur := readSecret(t, c, path, 0)
	s := secretSnapshot{
		current:   intField(cur.Data["current_version"]),
		passwords: map[int]string{},
		history:   history(t, c, path),
	}
	s.versions, _ = cur.Data["versions"].(map[string]interface{})
	for v := range s.versions {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("version key %q", v)
		}
		pw, _ := readSecret(t, c, path, n).Data["password"].(string)
		rememberSecret(pw)
		s.passwords[n] = pw
	}
	return s
}

// assertSameSnapshot compares two snapshots without printing secrets.
func assertSameSnapshot(t *testing.T, what string, want, got secretSnapshot) {
	t.Helper()
	if got.current != want.current || len(got.passwords) != len(want.passwords) {
		t.Fatalf("%s: current version %d with %d versions, want %d with %d", what, got.current, len(got.passwords), want.current, len(want.passwords))
	}
	for v, pw := range want.passwords {
		if got.passwords[v] != pw || pw == "" {
			t.Errorf("%s: version %d's password differs or is empty", what, v)
		}
	}
	if !reflect.DeepEqual(got.versions, want.versions) {
		t.Errorf("%s: versions\n%v\nwant\n%v", what, got.versions, want.versions)
	}
	if !reflect.DeepEqual(got.history, want.history) {
		t.Errorf("%s: history\n%v\nwant\n%v", what, got.history, want.history)
	}
}

// readSecret reads a secret (version 0: the current one), which must exist.
func readSecret(t *testing.T, c *api.Client, path string, version int) *api.Secret {
	t.Helper()
	var query map[string][]string
	if version != 0 {
		query = map[string][]string{"version": {strconv.Itoa(version)}}
	}
	s, err := readRaw(c.Logical(), path, query)
	if err != nil {
		t.Fatalf("read %s version %d via %s: %v", path, version, c.Address(), err)
	}
	return s
}

// history returns a secret's rotation history, newest first.
func history(t *testing.T, c *api.Client, path string) []map[string]interface{} {
	t.Helper()
	s := readSecret(t, c, path+"/history", 0)
	raw, _ := s.Data["history"].([]interface{})
	var out []map[string]interface{}
	for _, h := range raw {
		entry, _ := h.(map[string]interface{})
		out = append(out, entry)
	}
	return out
}

// newestHistory returns the newest history entry, or an empty one.
func newestHistory(t *testing.T, c *api.Client, path string) map[string]interface{} {
	t.Helper()
	if h := history(t, c, path); len(h) > 0 {
		return h[0]
	}
	return map[string]interface{}{}
}

// raftServer is autopilot's view of one server, asked through via.
func raftServer(via *clusterNode, id string) (*api.AutopilotServer, error) {
	st, err := via.client.Sys().RaftAutopilotState()
	if err != nil {
		return nil, err
	}
	if st == nil || st.Servers[id] == nil {
		return nil, errors.New("autopilot state on " + via.id + " lacks " + id)
	}
	return st.Servers[id], nil
}

// intField reads a number from a Go client response (a json.Number).
func intField(v interface{}) int {
	n, _ := strconv.Atoi(fmt.Sprint(v))
	return n
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
