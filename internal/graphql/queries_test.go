package graphql_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// diamondYAML's steps run on a remote queue no worker serves: they stay
// pending, so the tests see fixed states.
const diamondYAML = `namespace_name: shop
name: diamond
version: 1.0.0
step_templates:
  - {name: a, handler: "remote:q"}
  - {name: b, handler: "remote:q", depends_on_step: a}
  - {name: c, handler: "remote:q", depends_on_step: a}
  - {name: d, handler: "remote:q", depends_on_steps: [b, c]}
`

type taskNode struct {
	ID       string          `json:"id"`
	Status   string          `json:"status"`
	FullName string          `json:"fullName"`
	Tags     []string        `json:"tags"`
	Context  json.RawMessage `json:"context"`
	Steps    []stepNode      `json:"steps"`
}

type stepNode struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Status          string     `json:"status"`
	DependencyLevel *int       `json:"dependencyLevel"`
	DependsOn       []stepNode `json:"dependsOn"`
	DependsOnNames  []string   `json:"dependsOnNames"`
	Readiness       *struct {
		DependenciesSatisfied bool    `json:"dependenciesSatisfied"`
		BlockedReason         *string `json:"blockedReason"`
	} `json:"readiness"`
	Task *taskNode `json:"task"`
}

type connection struct {
	Edges []struct {
		Cursor string   `json:"cursor"`
		Node   taskNode `json:"node"`
	} `json:"edges"`
	PageInfo struct {
		HasNextPage bool    `json:"hasNextPage"`
		EndCursor   *string `json:"endCursor"`
	} `json:"pageInfo"`
}

func (c connection) ids() []string {
	var out []string
	for _, e := range c.Edges {
		out = append(out, e.Node.ID)
	}
	return out
}

const createMutation = `mutation($in: CreateTaskInput!) { createTask(input: $in) { created task { id status fullName tags context } } }`

// Every query through HTTP, against what REST answers for the same objects.
func TestQueries(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	s.register("", diamondYAML)

	var created struct {
		Created bool     `json:"created"`
		Task    taskNode `json:"task"`
	}
	s.gql("", createMutation, map[string]any{"in": map[string]any{
		"namespace": "shop", "name": "diamond", "tags": []string{"vip"}, "context": map[string]any{"order": 7}}}).field(t, "createTask", &created)
	if !created.Created || created.Task.FullName != "shop.diamond@1.0.0" || string(created.Task.Context) != `{"order":7}` ||
		!slices.Equal(created.Task.Tags, []string{"vip"}) {
		t.Fatalf("createTask: %+v", created)
	}
	second := s.createREST("", "shop", "diamond")
	third := s.createREST("", "shop", "diamond")

	// The list pages like REST's, newest first.
	const list = `query($first: Int, $after: String, $f: TaskFilter) {
		tasks(first: $first, after: $after, filter: $f) { edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }`
	var page1, page2 connection
	s.gql("", list, map[string]any{"first": 2, "f": map[string]any{"namespace": "shop"}}).field(t, "tasks", &page1)
	if !slices.Equal(page1.ids(), []string{third, second}) || !page1.PageInfo.HasNextPage {
		t.Fatalf("first page: %+v", page1)
	}
	s.gql("", list, map[string]any{"first": 2, "after": *page1.PageInfo.EndCursor, "f": map[string]any{"namespace": "shop"}}).field(t, "tasks", &page2)
	if !slices.Equal(page2.ids(), []string{created.Task.ID}) || page2.PageInfo.HasNextPage {
		t.Fatalf("second page: %+v", page2)
	}
	var tagged, none connection
	s.gql("", list, map[string]any{"f": map[string]any{"tags": []string{"vip"}, "statuses": []string{"PENDING", "IN_PROGRESS"}}}).field(t, "tasks", &tagged)
	if !slices.Equal(tagged.ids(), []string{created.Task.ID}) {
		t.Fatalf("tagged vip: %+v", tagged)
	}
	s.gql("", list, map[string]any{"f": map[string]any{"statuses": []string{"COMPLETE"}}}).field(t, "tasks", &none)
	if len(none.Edges) != 0 || none.PageInfo.EndCursor != nil {
		t.Fatalf("complete: %+v", none)
	}
	if g := s.gql("", list, map[string]any{"after": "garbage"}); g.code() != "BAD_REQUEST" || g.Errors[0].Extensions["status"] != float64(400) {
		t.Fatalf("bad cursor: %+v", g)
	}

	// A task with its steps and their dependency levels in one request,
	// as REST's include=dependencies has them.
	const taskQuery = `query($id: UUID!) { task(id: $id) { id status fullName steps {
		id name status dependencyLevel dependsOnNames dependsOn { name } readiness { dependenciesSatisfied blockedReason } } } }`
	var task taskNode
	s.gql("", taskQuery, map[string]any{"id": second}).field(t, "task", &task)
	code, view := s.rest("GET", "/tasks/"+second+"?include=dependencies", "", "")
	if code != 200 {
		t.Fatalf("REST show: %d", code)
	}
	restSteps := view["workflow_steps"].([]any)
	if task.ID != second || task.Status != view["status"] || len(task.Steps) != len(restSteps) || len(task.Steps) != 4 {
		t.Fatalf("task: %+v\nREST: %v", task, view)
	}
	for i, st := range task.Steps {
		rs := restSteps[i].(map[string]any)
		rd := rs["readiness"].(map[string]any)
		var names []string
		for _, p := range st.DependsOn {
			names = append(names, p.Name)
		}
		var restParents []string
		for _, p := range rs["depends_on_steps"].([]any) {
			restParents = append(restParents, p.(string))
		}
		if st.ID != rs["step_id"] || st.Name != rs["name"] || st.Status != rs["status"] ||
			st.DependencyLevel == nil || float64(*st.DependencyLevel) != rd["dependency_level"] ||
			!slices.Equal(names, restParents) || !slices.Equal(st.DependsOnNames, restParents) ||
			st.Readiness == nil || st.Readiness.DependenciesSatisfied != rd["dependencies_satisfied"] {
			t.Errorf("step %d: %+v\nREST: %v", i, st, rs)
		}
		// null when ready or finished, as REST leaves it out.
		if want, _ := rd["blocked_reason"].(string); (want == "") != (st.Readiness.BlockedReason == nil) ||
			(want != "" && *st.Readiness.BlockedReason != want) {
			t.Errorf("step %s: blockedReason %v, REST %q", st.Name, st.Readiness.BlockedReason, want)
		}
	}
	if task.Steps[3].Readiness.BlockedReason == nil || *task.Steps[3].Readiness.BlockedReason != "waiting_for_dependencies" {
		t.Errorf("d's blockedReason: %v", task.Steps[3].Readiness.BlockedReason)
	}
	levels := map[string]int{}
	for _, st := range task.Steps {
		levels[st.Name] = *st.DependencyLevel
	}
	if levels["a"] != 0 || levels["b"] != 1 || levels["c"] != 1 || levels["d"] != 2 {
		t.Errorf("levels: %v", levels)
	}

	// One step by its id, with its task.
	var step stepNode
	s.gql("", `query($id: UUID!) { step(id: $id) { id name dependsOn { name } task { id fullName } } }`,
		map[string]any{"id": task.Steps[3].ID}).field(t, "step", &step)
	if step.Name != "d" || len(step.DependsOn) != 2 || step.Task == nil || step.Task.ID != second {
		t.Fatalf("step: %+v", step)
	}

	// Discovery, as GET /handlers and /handlers/{namespace}.
	var namespaces []struct {
		Name         string `json:"name"`
		HandlerCount int    `json:"handlerCount"`
	}
	s.gql("", `{ namespaces { name handlerCount } }`, nil).field(t, "namespaces", &namespaces)
	_, restNS := s.rest("GET", "/handlers", "", "")
	if len(namespaces) != len(restNS["namespaces"].([]any)) || !slices.ContainsFunc(namespaces, func(n struct {
		Name         string `json:"name"`
		HandlerCount int    `json:"handlerCount"`
	}) bool {
		return n.Name == "shop" && n.HandlerCount == 1
	}) {
		t.Errorf("namespaces: %+v, REST %v", namespaces, restNS)
	}
	var handlers []struct {
		Name          string   `json:"name"`
		Versions      []string `json:"versions"`
		LatestVersion string   `json:"latestVersion"`
	}
	s.gql("", `{ handlers(namespace: "shop") { name versions latestVersion } }`, nil).field(t, "handlers", &handlers)
	if len(handlers) != 1 || handlers[0].Name != "diamond" || handlers[0].LatestVersion != "1.0.0" || !slices.Equal(handlers[0].Versions, []string{"1.0.0"}) {
		t.Errorf("handlers: %+v", handlers)
	}
	// paused follows REST's pause of the template, and not its namespace.
	if code, body := s.rest("POST", "/handlers/shop/diamond/pause", "", ""); code != 200 {
		t.Fatalf("pause: %d %v", code, body)
	}
	var pausedHandlers []struct {
		Paused bool `json:"paused"`
	}
	s.gql("", `{ handlers(namespace: "shop") { paused } }`, nil).field(t, "handlers", &pausedHandlers)
	var pausedNS []struct {
		Name   string `json:"name"`
		Paused bool   `json:"paused"`
	}
	s.gql("", `{ namespaces { name paused } }`, nil).field(t, "namespaces", &pausedNS)
	if len(pausedHandlers) != 1 || !pausedHandlers[0].Paused || slices.ContainsFunc(pausedNS, func(n struct {
		Name   string `json:"name"`
		Paused bool   `json:"paused"`
	}) bool {
		return n.Paused
	}) {
		t.Errorf("paused: handlers %+v, namespaces %+v", pausedHandlers, pausedNS)
	}
	if code, body := s.rest("POST", "/handlers/shop/diamond/resume", "", ""); code != 200 {
		t.Fatalf("resume: %d %v", code, body)
	}

	// Errors carry the REST problem's code and status.
	for _, tc := range []struct {
		name, query string
		vars        map[string]any
		code        string
		status      float64
	}{
		{"unknown task", `query($id: UUID!) { task(id: $id) { id } }`, map[string]any{"id": uuid.NewString()}, "NOT_FOUND", 404},
		{"unknown step", `query($id: UUID!) { step(id: $id) { id } }`, map[string]any{"id": uuid.NewString()}, "NOT_FOUND", 404},
		{"unknown namespace", `{ handlers(namespace: "nope") { name } }`, nil, "NOT_FOUND", 404},
		{"zero page", `{ tasks(first: 0) { edges { cursor } } }`, nil, "BAD_REQUEST", 400},
		{"no name", createMutation, map[string]any{"in": map[string]any{"name": ""}}, "VALIDATION_FAILED", 422},
		{"unknown template", createMutation, map[string]any{"in": map[string]any{"name": "nope"}}, "VALIDATION_FAILED", 422},
		{"context not an object", createMutation, map[string]any{"in": map[string]any{"name": "diamond", "namespace": "shop", "context": []int{1}}}, "VALIDATION_FAILED", 422},
	} {
		g := s.gql("", tc.query, tc.vars)
		if g.status != 200 || g.code() != tc.code || g.Errors[0].Extensions["status"] != tc.status ||
			!strings.HasPrefix(g.Errors[0].Extensions["type"].(string), "urn:taskerd:problem:") {
			t.Errorf("%s: %d %+v", tc.name, g.status, g.Errors)
		}
	}
	if g := s.gql("", createMutation, map[string]any{"in": map[string]any{"name": ""}}); len(g.Errors) == 1 {
		fields, _ := g.Errors[0].Extensions["errors"].([]any)
		if len(fields) != 1 || fields[0].(map[string]any)["pointer"] != "/name" {
			t.Errorf("field errors: %+v", g.Errors[0].Extensions)
		}
	}
	// A query that is not GraphQL is refused by gqlgen with its own code, never a 500.
	if g := s.gql("", `{ tasks { nope } }`, nil); g.status != http.StatusUnprocessableEntity || g.code() != "GRAPHQL_VALIDATION_FAILED" {
		t.Errorf("invalid query: %d %+v", g.status, g.Errors)
	}
}

// The playground's page and files are served by taskerd itself.
func TestPlaygroundServed(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	code, h, page := s.send("GET", "/graphql", "", "", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(string(page), `GraphQLPlayground.init`) || !strings.Contains(string(page), `tasker\/graphql`) {
		t.Fatalf("page: %d %s %.300s", code, h.Get("Content-Type"), page)
	}
	for _, f := range []string{"playground.js", "playground.css", "favicon.png", "logo.png"} {
		if !strings.Contains(string(page), "graphql/"+f) && f != "logo.png" && f != "favicon.png" {
			t.Errorf("the page does not load %s", f)
		}
		code, _, body := s.send("GET", "/graphql/"+f, "", "", "")
		if code != 200 || len(body) == 0 {
			t.Errorf("%s: %d, %d bytes", f, code, len(body))
		}
	}
	if code, _, _ := s.send("GET", "/graphql/nope.js", "", "", ""); code != 404 {
		t.Errorf("unknown file: %d", code)
	}
}
