package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// brokenYAML: a (slow, fine) → b (fails for good) → d, and c (a root) → d.
const brokenYAML = `namespace_name: ops
name: broken
version: 1.0.0
step_templates:
  - {name: a, handler: sleep, handler_config: {duration: 40ms}}
  - {name: b, handler: fail, handler_config: {failures: 1, permanent: true}, depends_on_step: a}
  - {name: c, handler: noop}
  - {name: d, handler: noop, depends_on_steps: [b, c]}
`

type taskBody struct {
	TaskID      uuid.UUID  `json:"task_id"`
	Status      string     `json:"status"`
	Reason      string     `json:"reason"`
	Tags        []string   `json:"tags"`
	UpdatedAt   time.Time  `json:"updated_at"`
	Steps       []stepBody `json:"workflow_steps"`
	Transitions []struct {
		StepID   *uuid.UUID `json:"step_id"`
		StepName string     `json:"step_name"`
		To       string     `json:"to_state"`
		At       time.Time  `json:"created_at"`
	} `json:"transitions"`
	Analysis *struct {
		Context struct {
			ExecutionStatus   string  `json:"execution_status"`
			RecommendedAction string  `json:"recommended_action"`
			HealthStatus      string  `json:"health_status"`
			TotalSteps        int     `json:"total_steps"`
			CompletedSteps    int     `json:"completed_steps"`
			FailedSteps       int     `json:"failed_steps"`
			Completion        float64 `json:"completion_percentage"`
		} `json:"execution_context"`
		Levels []struct {
			Level int      `json:"level"`
			Steps []string `json:"steps"`
		} `json:"dependency_levels"`
		MaxDepth     int `json:"max_depth"`
		CriticalPath struct {
			Steps []struct {
				Name         string `json:"name"`
				DurationMS   int64  `json:"duration_ms"`
				CumulativeMS int64  `json:"cumulative_ms"`
			} `json:"steps"`
			Length     int   `json:"length"`
			DurationMS int64 `json:"duration_ms"`
		} `json:"critical_path"`
	} `json:"dependency_analysis"`
}

type stepBody struct {
	StepID     uuid.UUID       `json:"step_id"`
	Name       string          `json:"name"`
	Status     string          `json:"status"`
	Attempts   int             `json:"attempts"`
	RetryLimit int             `json:"retry_limit"`
	DependsOn  []string        `json:"depends_on_steps"`
	Inputs     json.RawMessage `json:"inputs"`
	Readiness  *struct {
		Ready           bool   `json:"ready_for_execution"`
		DepsSatisfied   bool   `json:"dependencies_satisfied"`
		BlockedReason   string `json:"blocked_reason"`
		DependencyLevel *int   `json:"dependency_level"`
		TotalParents    int    `json:"total_parents"`
	} `json:"readiness"`
	Errors []struct {
		Attempt   int             `json:"attempt"`
		Error     json.RawMessage `json:"error"`
		WillRetry bool            `json:"will_retry"`
	} `json:"errors"`
	Transitions []struct {
		To string `json:"to_state"`
	} `json:"transitions"`
}

func (b taskBody) step(name string) stepBody {
	for _, s := range b.Steps {
		if s.Name == name {
			return s
		}
	}
	return stepBody{}
}

// createTask creates a task and returns its id.
func (s templateServer) createTask(t *testing.T, body string) string {
	t.Helper()
	code, _, out := s.call(t, "POST", "/tasks", "application/json", body)
	if code != 201 {
		t.Fatalf("create %s: %d %v", body, code, out)
	}
	return out["task_id"].(string)
}

func TestTaskIncludes(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, brokenYAML)
	id := s.createTask(t, `{"namespace":"ops","name":"broken"}`)
	s.waitStatus(t, id, "error")

	var plain taskBody
	s.getJSON(t, "/tasks/"+id, 200, &plain)
	if len(plain.Steps) != 4 || plain.Transitions != nil || plain.Analysis != nil || plain.step("a").Readiness != nil {
		t.Errorf("no include: steps only, got %+v", plain)
	}
	var withSteps taskBody
	s.getJSON(t, "/tasks/"+id+"?include=steps", 200, &withSteps)
	if len(withSteps.Steps) != 4 || withSteps.Transitions != nil || withSteps.Analysis != nil {
		t.Errorf("include=steps: %+v", withSteps)
	}

	var full taskBody
	s.getJSON(t, "/tasks/"+id+"?include=steps,dependencies,transitions", 200, &full)
	if len(full.Transitions) == 0 || full.Analysis == nil {
		t.Fatalf("include=steps,dependencies,transitions: %+v", full)
	}
	a := full.Analysis
	c := a.Context
	if c.ExecutionStatus != "blocked_by_failures" || c.RecommendedAction != "handle_failures" || c.HealthStatus != "blocked" ||
		c.TotalSteps != 4 || c.CompletedSteps != 2 || c.FailedSteps != 1 || c.Completion != 50 {
		t.Errorf("execution context: %+v", c)
	}
	for name, want := range map[string]struct {
		reason string
		level  int
		deps   bool
	}{
		"a": {"", 0, true}, "c": {"", 0, true}, "b": {"failed", 1, true}, "d": {"waiting_for_dependencies", 2, false},
	} {
		r := full.step(name).Readiness
		if r == nil || r.BlockedReason != want.reason || r.DependencyLevel == nil || *r.DependencyLevel != want.level ||
			r.DepsSatisfied != want.deps || r.Ready {
			t.Errorf("%s readiness: %+v, want %+v", name, r, want)
		}
	}
	levels, _ := json.Marshal(a.Levels)
	if string(levels) != `[{"level":0,"steps":["a","c"]},{"level":1,"steps":["b"]},{"level":2,"steps":["d"]}]` || a.MaxDepth != 2 {
		t.Errorf("levels %s, depth %d", levels, a.MaxDepth)
	}
	// a slept 40 ms, c did nothing: the path through a outweighs the one through c.
	cp := a.CriticalPath
	var names []string
	var sum int64
	for _, st := range cp.Steps {
		names = append(names, st.Name)
		sum += st.DurationMS
		if st.CumulativeMS != sum {
			t.Errorf("critical path %s: cumulative %d, want %d", st.Name, st.CumulativeMS, sum)
		}
	}
	if strings.Join(names, ",") != "a,b,d" || cp.Length != 3 || cp.DurationMS != sum || cp.Steps[0].DurationMS < 40 {
		t.Errorf("critical path %+v", cp)
	}

	// Tasker's spelling gives the same analysis.
	var tasker taskBody
	s.getJSON(t, "/tasks/"+id+"?include_dependencies=true", 200, &tasker)
	if tasker.Analysis == nil || tasker.Analysis.CriticalPath.Length != 3 || tasker.Transitions != nil {
		t.Errorf("include_dependencies=true: %+v", tasker.Analysis)
	}
	for _, bad := range []string{"include=everything", "include_dependencies=yes", "expand=steps"} {
		if r := s.do(t, "GET", "/tasks/"+id+"?"+bad, nil, ""); r.code != 400 || !strings.Contains(string(r.body), "parameter") {
			t.Errorf("%s: %d %s", bad, r.code, r.body)
		}
	}

	// The step view: readiness, the failed attempt, transitions.
	b := full.step("b")
	var step stepBody
	s.getJSON(t, "/tasks/"+id+"/workflow_steps/"+b.StepID.String(), 200, &step)
	if step.Readiness == nil || step.Readiness.BlockedReason != "failed" || step.Readiness.TotalParents != 1 ||
		len(step.Errors) != 1 || step.Errors[0].Attempt != 1 || step.Errors[0].WillRetry ||
		!strings.Contains(string(step.Errors[0].Error), "configured to fail") || len(step.Transitions) != 3 {
		t.Errorf("step b: %+v", step)
	}
}

func TestTaskDiagram(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, brokenYAML)
	id := s.createTask(t, `{"namespace":"ops","name":"broken"}`)
	s.waitStatus(t, id, "error")
	var d struct {
		TaskID  string `json:"task_id"`
		Status  string `json:"status"`
		Format  string `json:"format"`
		Diagram string `json:"diagram"`
	}
	s.getJSON(t, "/tasks/"+id+"/diagram", 200, &d)
	want := []string{
		"flowchart TD\n",
		`s1["a<br/>complete"]:::complete`,
		`s2["b<br/>error"]:::error`,
		`s3["c<br/>complete"]:::complete`,
		`s4["d<br/>pending"]:::pending`,
		"s1 --> s2", "s2 --> s4", "s3 --> s4",
		"classDef error fill:#fee2e2",
	}
	for _, w := range want {
		if !strings.Contains(d.Diagram, w) {
			t.Errorf("diagram lacks %q:\n%s", w, d.Diagram)
		}
	}
	if d.TaskID != id || d.Status != "error" || d.Format != "mermaid" || strings.Count(d.Diagram, "-->") != 3 {
		t.Errorf("diagram %+v", d)
	}
	r := s.do(t, "GET", "/tasks/"+id+"/diagram?format=mermaid", nil, "")
	if r.code != 200 || r.header.Get("Content-Type") != "text/plain; charset=utf-8" || string(r.body) != d.Diagram {
		t.Errorf("format=mermaid: %d %s %q", r.code, r.header.Get("Content-Type"), r.body)
	}
	if r := s.do(t, "GET", "/tasks/"+id+"/diagram?format=png", nil, ""); r.code != 400 {
		t.Errorf("format=png: %d", r.code)
	}
}

func TestTaskTransitionsPages(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, noopDiamondYAML)
	id := s.createTask(t, `{"namespace":"shop","name":"diamond"}`)
	var full taskBody
	raw := s.waitStatus(t, id, "complete")
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &full); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Transitions []struct {
			StepID   *uuid.UUID `json:"step_id"`
			StepName string     `json:"step_name"`
			To       string     `json:"to_state"`
			At       time.Time  `json:"created_at"`
		} `json:"transitions"`
		HasMore    bool    `json:"has_more"`
		NextCursor *string `json:"next_cursor"`
	}
	var got []string
	path := "/tasks/" + id + "/transitions?limit=4"
	pages := 0
	for {
		var p page
		hdr := s.getJSON(t, path, 200, &p)
		pages++
		for _, tr := range p.Transitions {
			got = append(got, fmt.Sprintf("%v/%s/%s", tr.StepID, tr.To, tr.At.Format(time.RFC3339Nano)))
			if (tr.StepID == nil) != (tr.StepName == "") {
				t.Errorf("step_name %q for step %v", tr.StepName, tr.StepID)
			}
		}
		if !p.HasMore {
			break
		}
		if !strings.Contains(hdr.Get("Link"), "cursor=") {
			t.Errorf("no Link to the next page: %q", hdr.Get("Link"))
		}
		path = "/tasks/" + id + "/transitions?limit=4&cursor=" + *p.NextCursor
	}
	var want []string
	for _, tr := range full.Transitions {
		want = append(want, fmt.Sprintf("%v/%s/%s", tr.StepID, tr.To, tr.At.Format(time.RFC3339Nano)))
	}
	if !slices.Equal(got, want) || len(want) != 15 || pages != 4 {
		t.Errorf("paged transitions (%d pages):\n%v\nwant\n%v", pages, got, want)
	}

	stepID := full.step("b").StepID.String()
	var one page
	s.getJSON(t, "/tasks/"+id+"/transitions?step_id="+stepID, 200, &one)
	if len(one.Transitions) != 3 || one.Transitions[0].StepName != "b" || one.Transitions[2].To != "complete" {
		t.Errorf("step b's transitions: %+v", one)
	}

	// A cursor belongs to its list, task and filters.
	other := s.createTask(t, `{"namespace":"shop","name":"diamond"}`)
	var tasksPage listPage
	s.getJSON(t, "/tasks?limit=1", 200, &tasksPage)
	tasksCursor := *tasksPage.NextCursor
	var first page
	s.getJSON(t, "/tasks/"+id+"/transitions?limit=2", 200, &first)
	for _, tc := range []struct{ path, detail string }{
		{"/tasks/" + other + "/transitions?cursor=" + *first.NextCursor, "other filters"},
		{"/tasks/" + id + "/transitions?step_id=" + stepID + "&cursor=" + *first.NextCursor, "other filters"},
		{"/tasks/" + id + "/transitions?cursor=eyJ2IjoxfQ", "not a cursor"},
		{"/tasks/" + id + "/transitions?cursor=" + tasksCursor, "issued for the tasks list"},
		{"/tasks/" + id + "/transitions?step_id=b", "not a UUID"},
		{"/tasks/" + id + "/transitions?limit=0", "positive"},
	} {
		r := s.do(t, "GET", tc.path, nil, "")
		if r.code != 400 || !strings.Contains(string(r.body), tc.detail) {
			t.Errorf("%s: %d %s", tc.path, r.code, r.body)
		}
	}
	if r := s.do(t, "GET", "/tasks/"+uuid.NewString()+"/transitions", nil, ""); r.code != 404 {
		t.Errorf("unknown task: %d", r.code)
	}
}

func TestPatchTask(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, checkoutYAML)
	id := s.createTask(t, `{"namespace":"shop","name":"checkout","reason":"first","tags":["a"]}`)
	path := "/tasks/" + id

	code, _, body := s.call(t, "PATCH", path, "application/json", `{"reason":"expedite","tags":["vip","rush"]}`)
	if code != 200 || body["reason"] != "expedite" || fmt.Sprint(body["tags"]) != "[vip rush]" {
		t.Fatalf("patch: %d %v", code, body)
	}
	code, _, body = s.call(t, "PATCH", path, "application/json", `{"tags":[]}`)
	if code != 200 || body["reason"] != "expedite" || fmt.Sprint(body["tags"]) != "[]" {
		t.Errorf("clear tags, keep reason: %d %v", code, body)
	}
	code, _, body = s.call(t, "PATCH", path, "application/json", `{"reason":""}`)
	if _, has := body["reason"]; code != 200 || has {
		t.Errorf("clear reason: %d %v", code, body)
	}
	// Let the engine finish the task first: only the refused patches may
	// not change it, and the engine legitimately does.
	s.waitStatus(t, id, "complete")
	before := s.do(t, "GET", path, nil, "").body

	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		detail                  string
	}{
		{"another field", "application/json", `{"reason":"x","status":"complete"}`, 422, `"pointer":"/status"`},
		{"context may not change", "application/json", `{"context":{"a":1}}`, 422, `"pointer":"/context"`},
		{"nothing to change", "application/json", `{}`, 422, "nothing to change"},
		{"wrong type", "application/json", `{"tags":"vip"}`, 422, `"pointer":"/tags"`},
		{"empty tag", "application/json", `{"tags":["ok",""]}`, 422, `"pointer":"/tags/1"`},
		{"malformed", "application/json", `{"reason":`, 400, "malformed JSON"},
		{"not JSON", "text/plain", `reason=x`, 415, "Content-Type"},
		{"query parameter", "application/json", `{"reason":"x"}`, 400, "unknown parameter"},
	} {
		p := path
		if tc.name == "query parameter" {
			p += "?force=true"
		}
		code, hdr, body := s.call(t, "PATCH", p, tc.contentType, tc.body)
		raw, _ := json.Marshal(body)
		if code != tc.status || hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(raw), tc.detail) {
			t.Errorf("%s: %d %s; want %d with %s", tc.name, code, raw, tc.status, tc.detail)
		}
	}
	// Nothing of those refusals was written.
	if after := s.do(t, "GET", path, nil, "").body; string(after) != string(before) {
		t.Errorf("a refused patch changed the task:\n%s\n%s", before, after)
	}
	if code, _, _ := s.call(t, "PATCH", "/tasks/"+uuid.NewString(), "application/json", `{"reason":"x"}`); code != 404 {
		t.Errorf("unknown task: %d", code)
	}
}

func TestPatchStep(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, noopDiamondYAML)
	runAt := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	id := s.createTask(t, `{"namespace":"shop","name":"diamond","run_at":"`+runAt+`"}`)
	var task taskBody
	s.getJSON(t, "/tasks/"+id, 200, &task)
	stepPath := func(name string) string { return "/tasks/" + id + "/workflow_steps/" + task.step(name).StepID.String() }

	code, _, body := s.call(t, "PATCH", stepPath("a"), "application/json", `{"retry_limit":7,"inputs":{"sku":"abc"}}`)
	if code != 200 || body["retry_limit"] != float64(7) || fmt.Sprint(body["inputs"]) != "map[sku:abc]" {
		t.Fatalf("patch a: %d %v", code, body)
	}
	code, _, body = s.call(t, "PATCH", stepPath("a"), "application/json", `{"inputs":null}`)
	if _, has := body["inputs"]; code != 200 || has || body["retry_limit"] != float64(7) {
		t.Errorf("clear inputs: %d %v", code, body)
	}

	conn := connect(t, s.dsn)
	// b is running (as if claimed), c has spent two attempts and waits to retry.
	mustExec(t, conn, `UPDATE workflow_steps SET status = 'in_progress', attempts = 1 WHERE workflow_step_id = $1`, task.step("b").StepID)
	mustExec(t, conn, `UPDATE workflow_steps SET attempts = 2, last_error = '{"message":"x"}' WHERE workflow_step_id = $1`, task.step("c").StepID)

	for _, tc := range []struct {
		name, path, body string
		status           int
		detail           string
	}{
		{"running step", stepPath("b"), `{"retry_limit":5}`, 409, "in_progress"},
		{"no attempt left", stepPath("c"), `{"retry_limit":2}`, 422, "already spent 2"},
		{"zero", stepPath("d"), `{"retry_limit":0}`, 422, `"pointer":"/retry_limit"`},
		{"too many", stepPath("d"), `{"retry_limit":1001}`, 422, `"pointer":"/retry_limit"`},
		{"inputs not an object", stepPath("d"), `{"inputs":[1,2]}`, 422, `"pointer":"/inputs"`},
		{"another field", stepPath("d"), `{"status":"complete"}`, 422, `"pointer":"/status"`},
		{"nothing", stepPath("d"), `{}`, 422, "nothing to change"},
		{"unknown step", "/tasks/" + id + "/workflow_steps/" + uuid.NewString(), `{"retry_limit":2}`, 404, "no such"},
		{"step of another task", "/tasks/" + uuid.NewString() + "/workflow_steps/" + task.step("d").StepID.String(), `{"retry_limit":2}`, 404, "no such"},
	} {
		code, hdr, body := s.call(t, "PATCH", tc.path, "application/json", tc.body)
		raw, _ := json.Marshal(body)
		if code != tc.status || hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(raw), tc.detail) {
			t.Errorf("%s: %d %s; want %d with %s", tc.name, code, raw, tc.status, tc.detail)
		}
	}
	var c stepBody
	s.getJSON(t, stepPath("c"), 200, &c)
	if c.RetryLimit != 3 {
		t.Errorf("a refused patch changed c: retry_limit %d", c.RetryLimit)
	}
	if code, _, body := s.call(t, "PATCH", stepPath("c"), "application/json", `{"retry_limit":3}`); code != 200 || body["retry_limit"] != float64(3) {
		t.Errorf("a limit above what c spent: %d %v", code, body)
	}

	// Tasker's destroy of a step cancels it.
	code, _, body = s.call(t, "DELETE", stepPath("d"), "", "")
	if code != 200 || body["status"] != "cancelled" {
		t.Errorf("delete step: %d %v", code, body)
	}
	// An action refuses a body it does not take, before acting.
	code, _, body = s.call(t, "POST", stepPath("a")+"/cancel", "application/json", `{"force":true}`)
	if code != 422 {
		t.Errorf("cancel with a body: %d %v", code, body)
	}
	r := s.do(t, "POST", stepPath("a")+"/cancel", http.Header{"Content-Type": {"text/xml"}}, `<cancel/>`)
	if r.code != 415 {
		t.Errorf("cancel with XML: %d %s", r.code, r.body)
	}
	s.getJSON(t, stepPath("a"), 200, &c)
	if c.Status != "pending" {
		t.Errorf("a refused cancel changed a: %s", c.Status)
	}
}
