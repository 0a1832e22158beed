package api_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/testserver"
)

const pauseSlowYAML = `namespace_name: pz
name: slow
version: 1.0.0
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: noop, depends_on_step: a}
`

const pauseOtherYAML = `namespace_name: pz
name: other
version: 1.0.0
step_templates:
  - {name: a, handler: noop}
`

const pauseRemoteYAML = `namespace_name: pzr
name: remote
version: 1.0.0
step_templates:
  - {name: a, handler: "remote:pzq"}
`

// pausedFlags reads discovery: the namespace's flag, and its templates'.
func pausedFlags(t *testing.T, s templateServer, ns string) (bool, map[string]bool) {
	t.Helper()
	var body struct {
		Paused   bool `json:"paused"`
		Handlers []struct {
			Name   string `json:"name"`
			Paused bool   `json:"paused"`
		} `json:"handlers"`
	}
	s.getJSON(t, "/handlers/"+ns, 200, &body)
	out := map[string]bool{}
	for _, h := range body.Handlers {
		out[h.Name] = h.Paused
	}
	return body.Paused, out
}

// stepParked reads a step's parked marker ("" for none) and status.
func stepParked(t *testing.T, f bulkFixture, taskID, step string) (parked, status string) {
	t.Helper()
	err := f.conn.QueryRow(context.Background(),
		`SELECT coalesce(parked, ''), status FROM workflow_steps WHERE task_id = $1 AND name = $2`, taskID, step).Scan(&parked, &status)
	if err != nil {
		t.Fatal(err)
	}
	return parked, status
}

// A paused template's steps are not claimed while other templates' are;
// the pause survives a restart of the replica; resume runs the waiting work.
func TestPauseTemplateSurvivesRestartAndResumes(t *testing.T) {
	t.Parallel()
	r := testserver.Start(t, nil, nil)
	s := templateServer{url: r.URL + api.BasePath, dsn: r.DSN, handler: r.Server.Handler()}
	s.register(t, pauseSlowYAML)
	s.register(t, pauseOtherYAML)
	f := bulkFixture{templateServer: s, conn: connect(t, s.dsn)}

	// A task created before the pause, whose first step waits to run at
	// once: pausing parks it.
	code, _, body := s.call(t, "POST", "/handlers/pz/slow/pause", "", "")
	if code != 200 || body["paused"] != true || body["name"] != "slow" {
		t.Fatalf("pause: %d %v", code, body)
	}
	if nsPaused, hs := pausedFlags(t, s, "pz"); nsPaused || !hs["slow"] || hs["other"] {
		t.Fatalf("discovery after pause: namespace %v, templates %v", nsPaused, hs)
	}
	var detail struct {
		Handler struct {
			Paused bool `json:"paused"`
		} `json:"handler"`
	}
	s.getJSON(t, "/handlers/pz/slow", 200, &detail)
	if !detail.Handler.Paused {
		t.Fatal("GET /handlers/pz/slow: paused false")
	}
	var status struct {
		Paused []struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"paused"`
	}
	s.getJSON(t, "/health/status", 200, &status)
	if len(status.Paused) != 1 || status.Paused[0].Namespace != "pz" || status.Paused[0].Name != "slow" {
		t.Fatalf("health status paused: %+v", status.Paused)
	}

	// New tasks are accepted and wait; the other template runs meanwhile.
	slow := s.createTask(t, `{"namespace":"pz","name":"slow","context":{}}`)
	other := s.createTask(t, `{"namespace":"pz","name":"other","context":{}}`)
	s.waitStatus(t, other, "complete")
	waitParked(t, f, slow, "a")

	// Restart: a new replica on the same database still holds the pause.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.Server.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := testserver.Start(t, map[string]string{"TASKER_DATABASE_URL": r.DSN}, nil)
	s2 := templateServer{url: r2.URL + api.BasePath, dsn: r.DSN, handler: r2.Server.Handler()}
	if _, hs := pausedFlags(t, s2, "pz"); !hs["slow"] {
		t.Fatal("after restart: slow no longer paused")
	}
	other2 := s2.createTask(t, `{"namespace":"pz","name":"other","context":{}}`)
	s2.waitStatus(t, other2, "complete")
	if parked, st := stepParked(t, f, slow, "a"); parked != "paused" || st != "pending" {
		t.Fatalf("after restart: slow step a %s/%s, want pending and parked", st, parked)
	}
	// The dependency analysis says why the step waits, not that it is ready.
	code, _, body = s2.call(t, "GET", "/tasks/"+slow+"?include=dependencies", "", "")
	if code != 200 {
		t.Fatalf("show with dependencies: %d %v", code, body)
	}
	steps, _ := body["workflow_steps"].([]any)
	var readiness map[string]any
	for _, st := range steps {
		if st := st.(map[string]any); st["name"] == "a" {
			readiness, _ = st["readiness"].(map[string]any)
		}
	}
	if readiness == nil || readiness["ready_for_execution"] != false || readiness["blocked_reason"] != "paused" {
		t.Fatalf("readiness of the paused step: %v", readiness)
	}

	code, _, body = s2.call(t, "POST", "/handlers/pz/slow/resume", "", "")
	if code != 200 || body["paused"] != false || body["steps"] != float64(1) {
		t.Fatalf("resume: %d %v", code, body)
	}
	s2.waitStatus(t, slow, "complete")
	if _, hs := pausedFlags(t, s2, "pz"); hs["slow"] {
		t.Fatal("after resume: slow still paused")
	}

	// Unknown targets are 404s and leave no pause behind.
	if code, _, _ := s2.call(t, "POST", "/handlers/pz/nope/pause", "", ""); code != 404 {
		t.Fatalf("pause of an unknown template: %d", code)
	}
	if code, _, _ := s2.call(t, "POST", "/handlers/nope/pause", "", ""); code != 404 {
		t.Fatalf("pause of an unknown namespace: %d", code)
	}
	var n int
	if err := f.conn.QueryRow(context.Background(), `SELECT count(*) FROM handler_pauses`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("pauses left: %d %v", n, err)
	}
	// Both calls are in the audit trail.
	var audited int
	if err := f.conn.QueryRow(context.Background(),
		`SELECT count(*) FROM audit_events WHERE action IN ('tasker.handler:pause', 'tasker.handler:resume')`).Scan(&audited); err != nil || audited < 2 {
		t.Fatalf("audit events: %d %v", audited, err)
	}
}

// waitParked waits until the claim or the pause parked a step.
func waitParked(t *testing.T, f bulkFixture, taskID, step string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		parked, status := stepParked(t, f, taskID, step)
		if parked == "paused" && status == "pending" {
			return
		}
		if status != "pending" || time.Now().After(deadline) {
			t.Fatalf("step %s of %s: %s/%q, want pending and parked", step, taskID, status, parked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pausing a namespace stops remote workers' claims too; its steps run
// after resume.
func TestPauseNamespaceStopsWorkerClaims(t *testing.T) {
	t.Parallel()
	r := testserver.Start(t, nil, nil)
	s := templateServer{url: r.URL + api.BasePath, dsn: r.DSN, handler: r.Server.Handler()}
	s.register(t, pauseRemoteYAML)
	if code, _, body := s.call(t, "POST", "/handlers/pzr/pause", "", ""); code != 200 || body["paused"] != true {
		t.Fatalf("pause: %d %v", code, body)
	}
	if nsPaused, hs := pausedFlags(t, s, "pzr"); !nsPaused || !hs["remote"] {
		t.Fatalf("discovery: namespace %v, templates %v", nsPaused, hs)
	}
	task := s.createTask(t, `{"namespace":"pzr","name":"remote","context":{}}`)
	claim := func() []any {
		code, _, body := s.call(t, "POST", "/workers/claim", "application/json",
			`{"worker_id": "w-1", "handlers": ["remote:pzq"], "wait_seconds": 1}`)
		if code != 200 {
			t.Fatalf("claim: %d %v", code, body)
		}
		steps, _ := body["steps"].([]any)
		return steps
	}
	if steps := claim(); len(steps) != 0 {
		raw, _ := json.Marshal(steps)
		t.Fatalf("claimed from a paused namespace: %s", raw)
	}
	if code, _, body := s.call(t, "POST", "/handlers/pzr/resume", "", ""); code != 200 || body["paused"] != false {
		t.Fatalf("resume: %d %v", code, body)
	}
	steps := claim()
	if len(steps) != 1 || steps[0].(map[string]any)["task_id"] != task {
		t.Fatalf("after resume: claimed %v", steps)
	}
}

const pauseInflightYAML = `namespace_name: pzi
name: inflight
version: 1.0.0
step_templates:
  - {name: a, handler: sleep, handler_config: {duration: 700ms}}
  - {name: b, handler: noop, depends_on_step: a}
`

// A step running when its template is paused finishes; its child, which
// becomes runnable during the pause, is parked by the claim that meets it
// and runs after resume.
func TestPauseLetsRunningStepsFinish(t *testing.T) {
	t.Parallel()
	r := testserver.Start(t, nil, nil)
	s := templateServer{url: r.URL + api.BasePath, dsn: r.DSN, handler: r.Server.Handler()}
	s.register(t, pauseInflightYAML)
	f := bulkFixture{templateServer: s, conn: connect(t, s.dsn)}
	task := s.createTask(t, `{"namespace":"pzi","name":"inflight","context":{}}`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, status := stepParked(t, f, task, "a"); status == "in_progress" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("step a never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _, body := s.call(t, "POST", "/handlers/pzi/inflight/pause", "", ""); code != 200 || body["steps"] != float64(0) {
		t.Fatalf("pause: %d %v", code, body)
	}
	waitParked(t, f, task, "b")
	if _, status := stepParked(t, f, task, "a"); status != "complete" {
		t.Fatalf("the running step ended %s, want complete", status)
	}
	if code, _, body := s.call(t, "POST", "/handlers/pzi/inflight/resume", "", ""); code != 200 || body["steps"] != float64(1) {
		t.Fatalf("resume: %d %v", code, body)
	}
	s.waitStatus(t, task, "complete")
}
