package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/testserver"
)

// bulkWaitYAML's tasks wait for a remote worker that never comes: they
// stay pending until something cancels them.
const bulkWaitYAML = `namespace_name: bulk
name: wait
version: 1.0.0
step_templates:
  - {name: hold, handler: "remote:bulkq"}
  - {name: after, handler: noop, depends_on_step: hold}
`

// bulkBrokenYAML's tasks fail for good on their first attempt, and succeed
// on the next: retried, they complete.
const bulkBrokenYAML = `namespace_name: bulk
name: broken
version: 1.0.0
step_templates:
  - {name: a, handler: fail, handler_config: {failures: 1, permanent: true}}
  - {name: b, handler: echo, depends_on_step: a}
`

const bulkFineYAML = `namespace_name: bulk
name: fine
version: 1.0.0
step_templates:
  - {name: a, handler: noop}
`

// bulkFixture is a full replica with the bulk templates registered and a
// connection to its database.
type bulkFixture struct {
	templateServer
	conn *pgx.Conn
}

// setupBulk starts the replica with settings from env (nil: defaults).
func setupBulk(t *testing.T, env map[string]string) bulkFixture {
	t.Helper()
	r := testserver.Start(t, env, nil)
	s := templateServer{url: r.URL + api.BasePath, dsn: r.DSN, handler: r.Server.Handler()}
	for _, doc := range []string{bulkWaitYAML, bulkBrokenYAML, bulkFineYAML} {
		s.register(t, doc)
	}
	return bulkFixture{templateServer: s, conn: connect(t, s.dsn)}
}

// createTasks creates n tasks of a bulk template through the API, eight
// requests at a time. Each carries an idempotency key, so a request whose
// answer was lost (a short write timeout on a loaded machine) is repeated
// safely and answers the same task.
func (f bulkFixture) createTasks(t *testing.T, name string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	client := &http.Client{Timeout: 30 * time.Second}
	create := func(key string) (string, error) {
		req, err := http.NewRequest("POST", f.url+"/tasks",
			strings.NewReader(fmt.Sprintf(`{"namespace":"bulk","name":%q,"context":{},"tags":["bulk-test"]}`, name)))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var body struct {
			TaskID string `json:"task_id"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || (resp.StatusCode != 201 && resp.StatusCode != 200) {
			return "", fmt.Errorf("create %s: %d (%v)", name, resp.StatusCode, err)
		}
		return body.TaskID, nil
	}
	for range 8 {
		wg.Go(func() {
			for i := range next {
				key := uuid.NewString()
				var err error
				for range 5 {
					if ids[i], err = create(key); err == nil {
						break
					}
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// bulk posts a bulk action and decodes the answer, failing unless the
// status is want.
func (f bulkFixture) bulk(t *testing.T, action, body string, want int) map[string]any {
	t.Helper()
	req, err := http.NewRequest("POST", f.url+"/tasks/bulk/"+action, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	// A thousand tasks under -race on a loaded machine take a while.
	resp, err := (&http.Client{Timeout: api.BulkTimeout}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("bulk %s %.200s: %d, want %d: %s", action, body, resp.StatusCode, want, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("bulk %s: %v: %s", action, err, raw)
	}
	return out
}

// count runs a count query.
func count(t *testing.T, conn *pgx.Conn, query string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%v\n%s", err, query)
	}
	return n
}

// waitCount polls a count query until it answers want.
func waitCount(t *testing.T, conn *pgx.Conn, want int, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := count(t, conn, query, args...)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows, want %d: %s", n, want, query)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantCounts compares an answer's counts.
func wantCounts(t *testing.T, what string, got map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("%s: %s = %v, want %v (answer %v)", what, k, got[k], v, got)
		}
	}
}

// The case: 1,000 tasks cancelled by one filter, each exactly as
// DELETE /tasks/{id} cancels one (transitions, events for webhooks), in
// batches; a second call finds nothing left to cancel.
func TestBulkCancelThousandTasks(t *testing.T) {
	t.Parallel()
	// The bulk call takes longer than this write timeout (3.5 s and more):
	// a bulk call extends its own, or the answer would be lost.
	f := setupBulk(t, map[string]string{"TASKER_HTTP_WRITE_TIMEOUT": "2s"})
	r := f.do(t, "POST", "/webhooks", http.Header{"Content-Type": {"application/json"}},
		`{"url":"https://hooks.example.com/bulk","events":["task.cancelled","step.cancelled"]}`)
	if r.code != 201 {
		t.Fatalf("webhook: %d %s", r.code, r.body)
	}
	const n = 1000
	f.createTasks(t, "wait", n)
	started := time.Now()
	out := f.bulk(t, "cancel", `{"filter":{"namespace":"bulk","name":"wait","status":["pending","in_progress"]}}`, 200)
	t.Logf("bulk cancel of %d tasks: %s", n, time.Since(started).Round(time.Millisecond))
	wantCounts(t, "bulk cancel", out, map[string]any{"matched": n, "cancelled": n, "skipped": 0, "not_found": 0,
		"skipped_by_state": map[string]any{}})

	q := func(query string) int { return count(t, f.conn, query) }
	if got := q(`SELECT count(*) FROM tasks WHERE task_name = 'wait' AND status = 'cancelled'`); got != n {
		t.Errorf("%d tasks cancelled, want %d", got, n)
	}
	if got := q(`SELECT count(*) FROM workflow_steps WHERE status <> 'cancelled'
		AND task_id IN (SELECT task_id FROM tasks WHERE task_name = 'wait')`); got != 0 {
		t.Errorf("%d steps of cancelled tasks not cancelled", got)
	}
	// The transitions DELETE /tasks/{id} writes: the task's with reason
	// cancelled, each unfinished step's with reason task_cancelled.
	if got := q(`SELECT count(*) FROM task_transitions tt JOIN tasks t USING (task_id)
		WHERE t.task_name = 'wait' AND tt.to_state = 'cancelled' AND tt.from_state = 'pending'
		  AND tt.metadata->>'reason' = 'cancelled'`); got != n {
		t.Errorf("%d task transitions to cancelled, want %d", got, n)
	}
	if got := q(`SELECT count(*) FROM workflow_step_transitions st JOIN tasks t USING (task_id)
		WHERE t.task_name = 'wait' AND st.to_state = 'cancelled' AND st.metadata->>'reason' = 'task_cancelled'`); got != 2*n {
		t.Errorf("%d step transitions to cancelled, want %d", got, 2*n)
	}
	// The events reached the webhook outbox in the same transactions.
	waitCount(t, f.conn, n, `SELECT count(DISTINCT task_id) FROM webhook_outbox WHERE event_name = 'task.cancelled'`)
	waitCount(t, f.conn, 2*n, `SELECT count(*) FROM webhook_outbox WHERE event_name = 'step.cancelled'`)
	// The call is in the audit trail with its counts.
	if got := q(`SELECT count(*) FROM audit_events WHERE path = '/tasker/tasks/bulk/cancel' AND outcome = 'succeeded'
		AND action = 'tasker.task:cancel' AND namespace = 'bulk' AND resource_id LIKE 'bulk: 1000 matched, 1000 cancelled%'`); got != 1 {
		t.Errorf("%d audit rows for the bulk cancel, want 1", got)
	}

	// Again, by status only: everything is cancelled already, and the
	// filter no longer matches.
	out = f.bulk(t, "cancel", `{"filter":{"namespace":"bulk","status":["pending"]}}`, 200)
	wantCounts(t, "bulk cancel of nothing", out, map[string]any{"matched": 0, "cancelled": 0, "skipped": 0})
	// Again, by name: each is counted as skipped, by its state.
	out = f.bulk(t, "cancel", `{"filter":{"name":"wait"}}`, 200)
	wantCounts(t, "bulk cancel again", out, map[string]any{"matched": n, "cancelled": 0, "skipped": n,
		"skipped_by_state": map[string]any{"cancelled": n}})
	if got := q(`SELECT count(*) FROM task_transitions WHERE to_state = 'cancelled'`); got != n {
		t.Errorf("the second call wrote transitions: %d, want %d", got, n)
	}
}

// Failed tasks named by id are retried as POST /tasks/{id}/retry retries
// one, and then complete; tasks in other states and unknown ids are
// counted, not touched.
func TestBulkRetryFailedTasks(t *testing.T) {
	t.Parallel()
	f := setupBulk(t, nil)
	broken := f.createTasks(t, "broken", 20)
	fine := f.createTasks(t, "fine", 3)
	waitCount(t, f.conn, 20, `SELECT count(*) FROM tasks WHERE task_name = 'broken' AND status = 'error'`)
	waitCount(t, f.conn, 3, `SELECT count(*) FROM tasks WHERE task_name = 'fine' AND status = 'complete'`)

	unknown := uuid.NewString()
	ids := append(append(append([]string{}, broken...), fine...), unknown, broken[0]) // broken[0] twice: once counted
	body, _ := json.Marshal(map[string]any{"task_ids": ids})
	out := f.bulk(t, "retry", string(body), 200)
	wantCounts(t, "bulk retry", out, map[string]any{"matched": 23, "retried": 20, "skipped": 3, "not_found": 1,
		"skipped_by_state": map[string]any{"complete": 3}})

	if got := count(t, f.conn, `SELECT count(*) FROM task_transitions WHERE from_state = 'error' AND to_state = 'pending'
		AND metadata->>'reason' = 'retry_requested'`); got != 20 {
		t.Errorf("%d retry transitions of tasks, want 20", got)
	}
	if got := count(t, f.conn, `SELECT count(*) FROM workflow_step_transitions WHERE from_state = 'error' AND to_state = 'pending'
		AND metadata->>'reason' = 'retry_requested'`); got != 20 {
		t.Errorf("%d retry transitions of steps, want 20", got)
	}
	// Attempt 2 of the failing step succeeds: every retried task completes.
	waitCount(t, f.conn, 20, `SELECT count(*) FROM tasks WHERE task_name = 'broken' AND status = 'complete'`)

	// Nothing is in error now: a filter retry finds only tasks to skip.
	out = f.bulk(t, "retry", `{"filter":{"namespace":"bulk","tag":["bulk-test"]}}`, 200)
	wantCounts(t, "bulk retry of complete tasks", out, map[string]any{"matched": 23, "retried": 0, "skipped": 23,
		"skipped_by_state": map[string]any{"complete": 23}})
}

// A filter matching tasks in every state cancels the unfinished and the
// failed ones, and skips the finished ones, counted by state: bulk cancel
// never rewrites a complete task's history.
func TestBulkCancelSkipsFinishedTasks(t *testing.T) {
	t.Parallel()
	f := setupBulk(t, nil)
	pending := f.createTasks(t, "wait", 5)
	f.createTasks(t, "broken", 4)
	f.createTasks(t, "fine", 3)
	waitCount(t, f.conn, 4, `SELECT count(*) FROM tasks WHERE task_name = 'broken' AND status = 'error'`)
	waitCount(t, f.conn, 3, `SELECT count(*) FROM tasks WHERE task_name = 'fine' AND status = 'complete'`)
	// One cancelled before, by hand.
	if r := f.do(t, "DELETE", "/tasks/"+pending[0], nil, ""); r.code != 200 {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}

	out := f.bulk(t, "cancel", `{"filter":{"tag":["bulk-test"]}}`, 200)
	wantCounts(t, "bulk cancel", out, map[string]any{"matched": 12, "cancelled": 8, "skipped": 4, "not_found": 0,
		"skipped_by_state": map[string]any{"complete": 3, "cancelled": 1}})
	for name, want := range map[string]string{"wait": "cancelled", "broken": "cancelled", "fine": "complete"} {
		if got := count(t, f.conn, `SELECT count(*) FROM tasks WHERE task_name = $1 AND status <> $2`, name, want); got != 0 {
			t.Errorf("%d %s tasks are not %s", got, name, want)
		}
	}
	if got := count(t, f.conn, `SELECT count(*) FROM task_transitions tt JOIN tasks t USING (task_id)
		WHERE t.task_name = 'fine' AND tt.to_state = 'cancelled'`); got != 0 {
		t.Errorf("complete tasks got %d transitions to cancelled", got)
	}
}

// A caller holding the permission in customer_success only acts there:
// its filters are cut to its namespace, ids of payments tasks count as not
// found, and a caller without the permission is refused outright.
func TestBulkActionsStayInTheCallersNamespaces(t *testing.T) {
	t.Parallel()
	s := startAuthServer(t)
	admin := s.token("root", "admin")
	support := s.token("support@example.com", "elsewhere")
	viewer := s.token("viewer@example.com", "payments_viewer")
	pay := []string{s.newTask("payments"), s.newTask("payments"), s.newTask("payments")}
	cs := []string{s.newTask("customer_success"), s.newTask("customer_success")}
	status := func(id string) string {
		return s.json("GET", "/tasks/"+id, admin, "", 200)["status"].(string)
	}

	// Ids of the other namespace: not found, untouched.
	body, _ := json.Marshal(map[string]any{"task_ids": pay})
	out := s.json("POST", "/tasks/bulk/cancel", support, string(body), 200)
	if out["matched"] != float64(0) || out["not_found"] != float64(3) || out["cancelled"] != float64(0) {
		t.Errorf("ids of payments tasks as support: %v", out)
	}
	// A filter naming the other namespace matches nothing.
	out = s.json("POST", "/tasks/bulk/cancel", support, `{"filter":{"namespace":"payments"}}`, 200)
	if out["matched"] != float64(0) {
		t.Errorf("a filter on payments as support: %v", out)
	}
	// Without the permission at all: 403.
	if code, b := s.call("POST", "/tasks/bulk/cancel", viewer, `{"filter":{"status":["pending"]}}`); code != 403 {
		t.Errorf("bulk cancel as a viewer: %d %s", code, b)
	}
	for _, id := range pay {
		if st := status(id); st != "pending" {
			t.Errorf("payments task %s is %s after refused bulk calls", id, st)
		}
	}
	// A filter on every namespace cancels the caller's tasks only.
	out = s.json("POST", "/tasks/bulk/cancel", support, `{"filter":{"status":["pending"]}}`, 200)
	if out["matched"] != float64(2) || out["cancelled"] != float64(2) {
		t.Errorf("a filter on pending tasks as support: %v", out)
	}
	for _, id := range cs {
		if st := status(id); st != "cancelled" {
			t.Errorf("customer_success task %s is %s", id, st)
		}
	}
	for _, id := range pay {
		if st := status(id); st != "pending" {
			t.Errorf("payments task %s is %s after support's bulk cancel", id, st)
		}
	}
	// The caller is the actor of the transitions, as for DELETE.
	conn := connect(t, s.dsn)
	if got := count(t, conn, `SELECT count(*) FROM task_transitions WHERE to_state = 'cancelled' AND actor = 'support@example.com'`); got != 2 {
		t.Errorf("%d cancel transitions with support as the actor, want 2", got)
	}
	// Each call is audited: three by support, the viewer's refused.
	audit := s.json("GET", "/audit?limit=100&resource=task", admin, "", 200)
	// A call's namespace is its filter's, or else the caller's only one.
	var supportNamespaces []string
	var viewer403 int
	for _, e := range audit["events"].([]any) {
		e := e.(map[string]any)
		if e["path"] != api.BasePath+"/tasks/bulk/cancel" {
			continue
		}
		switch {
		case e["actor"] == "support@example.com" && e["outcome"] == "succeeded" && strings.HasPrefix(fmt.Sprint(e["resource_id"]), "bulk: "):
			supportNamespaces = append(supportNamespaces, fmt.Sprint(e["namespace"]))
		case e["actor"] == "viewer@example.com" && e["outcome"] == "denied":
			viewer403++
		}
	}
	slices.Sort(supportNamespaces)
	if !slices.Equal(supportNamespaces, []string{"customer_success", "customer_success", "payments"}) || viewer403 != 1 {
		t.Errorf("audit: bulk cancels by support in %v (want customer_success twice, payments once), %d refusals of the viewer (want 1): %v",
			supportNamespaces, viewer403, audit["events"])
	}
}

// Bodies that are not one clean selection are refused with a problem, and
// nothing changes: not both forms, not neither, no empty filter, no bad
// ids or states, not too many ids, no filter matching too many tasks.
func TestBulkRefusesBadBodies(t *testing.T) {
	t.Parallel()
	f := setupBulk(t, nil)
	ids := f.createTasks(t, "wait", 3)
	// More tasks than a filter may match, written directly (no steps).
	named := namedTaskID(t, f.conn, "bulk", "fine")
	many := make([]fixtureTask, api.MaxBulkFilterTasks+1)
	for i := range many {
		many[i] = fixtureTask{id: uuid.Must(uuid.NewV7()), namespace: "crowd", name: "fine", status: "pending", namedTaskID: named}
	}
	insertTasks(t, f.conn, many)
	tooMany := make([]string, api.MaxBulkTaskIDs+1)
	for i := range tooMany {
		tooMany[i] = uuid.NewString()
	}
	tooManyBody, _ := json.Marshal(map[string]any{"task_ids": tooMany})
	transitions := func() int {
		return count(t, f.conn, `SELECT (SELECT count(*) FROM task_transitions) + (SELECT count(*) FROM workflow_step_transitions)`)
	}
	before := transitions()

	for _, tc := range []struct {
		name, path, body string
		want             int
		pointer          string // of the first error, when there is one
	}{
		{"both forms", "cancel", fmt.Sprintf(`{"filter":{"namespace":"bulk"},"task_ids":[%q]}`, ids[0]), 422, ""},
		{"neither form", "cancel", `{}`, 422, ""},
		{"null filter only", "retry", `{"filter":null}`, 422, ""},
		{"empty filter", "cancel", `{"filter":{}}`, 422, "/filter"},
		{"empty ids", "retry", `{"task_ids":[]}`, 422, "/task_ids"},
		{"malformed id", "cancel", fmt.Sprintf(`{"task_ids":[%q,"not-a-uuid"]}`, ids[0]), 422, "/task_ids/1"},
		{"null id", "cancel", `{"task_ids":[null]}`, 422, "/task_ids/0"},
		{"nil id", "cancel", `{"task_ids":["00000000-0000-0000-0000-000000000000"]}`, 422, "/task_ids/0"},
		{"id of the wrong type", "cancel", `{"task_ids":[42]}`, 422, ""},
		{"too many ids", "cancel", string(tooManyBody), 422, "/task_ids"},
		{"unknown state", "cancel", `{"filter":{"status":["pending","stuck"]}}`, 422, "/filter/status/1"},
		{"time range backwards", "retry", `{"filter":{"created_after":"2025-02-01T00:00:00Z","created_before":"2025-01-01T00:00:00Z"}}`, 422, "/filter/created_after"},
		{"unknown filter", "cancel", `{"filter":{"namespace":"bulk","colour":"red"}}`, 422, ""},
		{"unknown field", "cancel", `{"task_ids":["` + ids[0] + `"],"force":true}`, 422, ""},
		{"query parameter", "cancel?dry_run=true", fmt.Sprintf(`{"task_ids":[%q]}`, ids[0]), 400, ""},
		{"malformed JSON", "cancel", `{"task_ids":[`, 400, ""},
		{"filter matching too many", "cancel", `{"filter":{"namespace":"crowd"}}`, 422, "/filter"},
		{"filter matching too many", "retry", `{"filter":{"name":"fine","status":["pending"]}}`, 422, "/filter"},
	} {
		r := f.do(t, "POST", "/tasks/bulk/"+tc.path, http.Header{"Content-Type": {"application/json"}}, tc.body)
		var p api.Problem
		if err := json.Unmarshal(r.body, &p); err != nil || r.code != tc.want || r.header.Get("Content-Type") != api.ContentTypeProblem ||
			p.Status != tc.want || p.Detail == "" {
			t.Errorf("%s: %d %s %s, want a %d problem", tc.name, r.code, r.header.Get("Content-Type"), r.body, tc.want)
			continue
		}
		if tc.pointer != "" && (len(p.Errors) == 0 || p.Errors[0].Pointer != tc.pointer) {
			t.Errorf("%s: errors %+v, want the first at %s", tc.name, p.Errors, tc.pointer)
		}
	}
	if after := transitions(); after != before {
		t.Errorf("refused bulk calls wrote %d transitions", after-before)
	}
	if got := count(t, f.conn, `SELECT count(*) FROM tasks WHERE status <> 'pending'`); got != 0 {
		t.Errorf("refused bulk calls changed %d tasks", got)
	}
}
