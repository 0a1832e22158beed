package graphql_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

const brokenYAML = `namespace_name: ops
name: broken
version: 1.0.0
step_templates:
  - {name: a, handler: fail, handler_config: {failures: 1, permanent: true}}
  - {name: b, handler: echo, depends_on_step: a}
`

// state is what a task's REST view says, without ids and times: two
// tasks that went through the same actions have the same state.
func (s *server) state(id string) any {
	s.t.Helper()
	code, v := s.rest("GET", "/tasks/"+id+"?include=transitions", "", "")
	if code != 200 {
		s.t.Fatalf("GET task %s: %d %v", id, code, v)
	}
	names := map[any]any{}
	var steps []any
	for _, st := range v["workflow_steps"].([]any) {
		m := st.(map[string]any)
		names[m["step_id"]] = m["name"]
		steps = append(steps, []any{m["name"], m["status"], m["attempts"], m["retry_limit"], m["results"]})
	}
	var transitions []any
	for _, tr := range v["transitions"].([]any) {
		m := tr.(map[string]any)
		transitions = append(transitions, []any{names[m["step_id"]], m["from_state"], m["to_state"], m["actor"]})
	}
	return map[string]any{"status": v["status"], "reason": v["reason"], "tags": v["tags"], "steps": steps, "transitions": transitions}
}

// twin is one action done on one task over REST and on its twin over
// GraphQL: same outcome (status ↔ code) and the same resulting state.
type twin struct {
	name        string
	rest        func(id string) (string, string) // method+path suffix, body
	gql         string                           // with $id
	vars        map[string]any
	wantStatus  int
	wantCode    string
	stepOfTwins string // the action addresses this step of each twin
}

var codeOfStatus = map[int]string{200: "", 201: "", 404: "NOT_FOUND", 409: "CONFLICT", 422: "VALIDATION_FAILED"}

func (s *server) runTwin(tc twin, restTask, gqlTask string) {
	s.t.Helper()
	restID, gqlID := restTask, gqlTask
	if tc.stepOfTwins != "" {
		_, rv := s.rest("GET", "/tasks/"+restTask, "", "")
		_, gv := s.rest("GET", "/tasks/"+gqlTask, "", "")
		restID, gqlID = stepID(s.t, rv, tc.stepOfTwins), stepID(s.t, gv, tc.stepOfTwins)
	}
	method, body := tc.rest(restID)
	var path string
	fmt.Sscanf(method, "%s %s", &method, &path)
	code, _ := s.rest(method, path, "", body)
	vars := map[string]any{"id": gqlID}
	for k, v := range tc.vars {
		vars[k] = v
	}
	g := s.gql("", tc.gql, vars)
	if code != tc.wantStatus || g.code() != tc.wantCode || codeOfStatus[code] != g.code() {
		s.t.Errorf("%s: REST %d, GraphQL %q %+v; want %d and %q", tc.name, code, g.code(), g.Errors, tc.wantStatus, tc.wantCode)
	}
	if g.code() != "" && g.Errors[0].Extensions["status"] != float64(code) {
		s.t.Errorf("%s: extensions.status %v, REST %d", tc.name, g.Errors[0].Extensions["status"], code)
	}
}

// The mutations behave exactly like their REST twins: each action is done
// on one task over REST and on an identical task over GraphQL, and the two
// answers and the two tasks' resulting states (statuses, attempts,
// results, transitions) are the same.
func TestMutationsMatchREST(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	s.register("", diamondYAML)
	s.register("", brokenYAML)

	// Tasks whose steps wait on a queue no worker serves.
	restTask, gqlTask := s.createREST("", "shop", "diamond"), s.createREST("", "shop", "diamond")
	steps := []twin{
		{name: "update", rest: func(id string) (string, string) {
			return "PATCH /tasks/" + id, `{"reason":"expedite","tags":["vip","x"]}`
		}, gql: `mutation($id: UUID!) { updateTask(id: $id, input: {reason: "expedite", tags: ["vip", "x"]}) { id reason tags } }`, wantStatus: 200},
		{name: "update with nothing", rest: func(id string) (string, string) { return "PATCH /tasks/" + id, `{}` },
			gql: `mutation($id: UUID!) { updateTask(id: $id, input: {}) { id } }`, wantStatus: 422, wantCode: "VALIDATION_FAILED"},
		{name: "update with an empty tag", rest: func(id string) (string, string) { return "PATCH /tasks/" + id, `{"tags":[""]}` },
			gql: `mutation($id: UUID!) { updateTask(id: $id, input: {tags: [""]}) { id } }`, wantStatus: 422, wantCode: "VALIDATION_FAILED"},
		{name: "retry a pending step", stepOfTwins: "a", rest: func(id string) (string, string) { return "POST " + stepPath(s, restTask, id) + "/retry", "" },
			gql: `mutation($id: UUID!) { retryStep(id: $id) { id } }`, wantStatus: 409, wantCode: "CONFLICT"},
		{name: "resolve a pending root with results", stepOfTwins: "a",
			rest: func(id string) (string, string) {
				return "POST " + stepPath(s, restTask, id) + "/resolve", `{"results":{"x":1}}`
			},
			gql: `mutation($id: UUID!, $r: JSON) { resolveStep(id: $id, results: $r) { id status results } }`, vars: map[string]any{"r": map[string]any{"x": 1}}, wantStatus: 200},
		{name: "resolve it again", stepOfTwins: "a", rest: func(id string) (string, string) { return "POST " + stepPath(s, restTask, id) + "/resolve", "" },
			gql: `mutation($id: UUID!) { resolveStep(id: $id) { id } }`, wantStatus: 409, wantCode: "CONFLICT"},
		{name: "cancel a step", stepOfTwins: "b", rest: func(id string) (string, string) { return "POST " + stepPath(s, restTask, id) + "/cancel", "" },
			gql: `mutation($id: UUID!) { cancelStep(id: $id) { id status } }`, wantStatus: 200},
		{name: "cancel it again", stepOfTwins: "b", rest: func(id string) (string, string) { return "POST " + stepPath(s, restTask, id) + "/cancel", "" },
			gql: `mutation($id: UUID!) { cancelStep(id: $id) { id } }`, wantStatus: 409, wantCode: "CONFLICT"},
		{name: "cancel the task", rest: func(id string) (string, string) { return "DELETE /tasks/" + id, "" },
			gql: `mutation($id: UUID!) { cancelTask(id: $id) { id status } }`, wantStatus: 200},
		{name: "cancel it again", rest: func(id string) (string, string) { return "DELETE /tasks/" + id, "" },
			gql: `mutation($id: UUID!) { cancelTask(id: $id) { id } }`, wantStatus: 409, wantCode: "CONFLICT"},
	}
	for _, tc := range steps {
		s.runTwin(tc, restTask, gqlTask)
		if r, g := s.state(restTask), s.state(gqlTask); !reflect.DeepEqual(r, g) {
			t.Fatalf("after %s the twins differ:\nREST    %v\nGraphQL %v", tc.name, r, g)
		}
	}
	if st := s.state(gqlTask).(map[string]any); st["status"] != "cancelled" || st["reason"] != "expedite" {
		t.Errorf("final state: %v", st)
	}

	// A failed step retried both ways runs again, and both tasks complete.
	failed := func(v map[string]any) bool { return v["status"] == "error" }
	restBroken, gqlBroken := s.createREST("", "ops", "broken"), s.createREST("", "ops", "broken")
	s.waitTask(restBroken, failed)
	s.waitTask(gqlBroken, failed)
	if r, g := s.state(restBroken), s.state(gqlBroken); !reflect.DeepEqual(r, g) {
		t.Fatalf("failed twins differ:\nREST    %v\nGraphQL %v", r, g)
	}
	s.runTwin(twin{name: "retry a failed step", stepOfTwins: "a",
		rest: func(id string) (string, string) { return "POST " + stepPath(s, restBroken, id) + "/retry", "" },
		gql:  `mutation($id: UUID!) { retryStep(id: $id) { id } }`, wantStatus: 200}, restBroken, gqlBroken)
	done := func(v map[string]any) bool { return v["status"] == "complete" }
	s.waitTask(restBroken, done)
	s.waitTask(gqlBroken, done)
	if r, g := s.state(restBroken), s.state(gqlBroken); !reflect.DeepEqual(r, g) {
		t.Fatalf("retried twins differ:\nREST    %v\nGraphQL %v", r, g)
	}

	// Creation: the same idempotency key answers the first task (REST's
	// 200), a different request with it is a conflict.
	create := `mutation($in: CreateTaskInput!) { createTask(input: $in) { created task { id } } }`
	in := map[string]any{"namespace": "shop", "name": "diamond", "idempotencyKey": "order-9"}
	var first, again struct {
		Created bool `json:"created"`
		Task    struct {
			ID string `json:"id"`
		} `json:"task"`
	}
	s.gql("", create, map[string]any{"in": in}).field(t, "createTask", &first)
	s.gql("", create, map[string]any{"in": in}).field(t, "createTask", &again)
	code, restAgain := s.rest("POST", "/tasks", "", `{"namespace":"shop","name":"diamond","idempotency_key":"order-9"}`)
	if !first.Created || again.Created || again.Task.ID != first.Task.ID || code != 200 || restAgain["task_id"] != first.Task.ID {
		t.Errorf("idempotent creation: %+v %+v; REST %d %v", first, again, code, restAgain["task_id"])
	}
	in["reason"] = "another request"
	code, _ = s.rest("POST", "/tasks", "", `{"namespace":"shop","name":"diamond","idempotency_key":"order-9","reason":"another request"}`)
	if g := s.gql("", create, map[string]any{"in": in}); g.code() != "CONFLICT" || code != 409 {
		t.Errorf("key reused: REST %d, GraphQL %+v", code, g.Errors)
	}
	raw, _ := json.Marshal(first)
	t.Logf("created %s", raw)
}

func stepPath(s *server, taskID, stepID string) string {
	return "/tasks/" + taskID + "/workflow_steps/" + stepID
}
