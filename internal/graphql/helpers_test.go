package graphql_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/testdb"
	"github.com/taskerd/taskerd/internal/testserver"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// server is a whole replica, called over HTTP.
type server struct {
	t    *testing.T
	base string // …/tasker
	r    *testserver.Replica
}

func start(t *testing.T, env map[string]string) *server {
	t.Helper()
	r := testserver.Start(t, env, nil)
	return &server{t: t, base: r.URL + api.BasePath, r: r}
}

// gqlError is one error of a GraphQL answer.
type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// gqlResponse is a GraphQL answer with its HTTP status.
type gqlResponse struct {
	status int
	Data   map[string]json.RawMessage `json:"data"`
	Errors []gqlError                 `json:"errors"`
}

// code is the first error's extensions.code, "" without errors.
func (g gqlResponse) code() string {
	if len(g.Errors) == 0 {
		return ""
	}
	c, _ := g.Errors[0].Extensions["code"].(string)
	return c
}

// field decodes data.<name> into out, failing on any error.
func (g gqlResponse) field(t *testing.T, name string, out any) {
	t.Helper()
	if len(g.Errors) > 0 || g.status != 200 {
		t.Fatalf("%d with errors %+v", g.status, g.Errors)
	}
	if err := json.Unmarshal(g.Data[name], out); err != nil {
		t.Fatalf("data.%s: %v: %s", name, err, g.Data[name])
	}
}

// gql sends one GraphQL request; token "" sends none.
func (s *server) gql(token, query string, vars map[string]any) gqlResponse {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	code, _, raw := s.send("POST", "/graphql", token, "application/json", string(body))
	out := gqlResponse{status: code}
	if err := json.Unmarshal(raw, &out); err != nil {
		s.t.Fatalf("POST /graphql: %d %v: %s", code, err, raw)
	}
	return out
}

// send makes one HTTP request.
func (s *server) send(method, path, token, contentType, body string) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, raw
}

// rest calls a REST route with a JSON (or YAML) body and decodes the answer.
func (s *server) rest(method, path, token, body string) (int, map[string]any) {
	s.t.Helper()
	ct := ""
	switch {
	case strings.HasPrefix(body, "namespace_name"):
		ct = "application/yaml"
	case body != "":
		ct = "application/json"
	}
	code, _, raw := s.send(method, path, token, ct, body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: %d %v: %s", method, path, code, err, raw)
		}
	}
	return code, out
}

// register registers a template, failing unless it is created.
func (s *server) register(token, yaml string) {
	s.t.Helper()
	if code, body := s.rest("POST", "/templates", token, yaml); code != 201 {
		s.t.Fatalf("register: %d %v", code, body)
	}
}

// createREST creates a task over REST and returns its id.
func (s *server) createREST(token, namespace, name string) string {
	s.t.Helper()
	code, body := s.rest("POST", "/tasks", token, fmt.Sprintf(`{"namespace":%q,"name":%q}`, namespace, name))
	if code != 201 {
		s.t.Fatalf("create: %d %v", code, body)
	}
	return body["task_id"].(string)
}

// waitTask polls the task until cond holds on its REST view, or fails
// after a deadline.
func (s *server) waitTask(id string, cond func(map[string]any) bool) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := s.rest("GET", "/tasks/"+id, "", "")
		if code == 200 && cond(body) {
			return body
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("task %s: condition not met: %d %v", id, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stepID is the id of the task's step named name, from its REST view.
func stepID(t *testing.T, view map[string]any, name string) string {
	t.Helper()
	for _, st := range view["workflow_steps"].([]any) {
		m := st.(map[string]any)
		if m["name"] == name {
			return m["step_id"].(string)
		}
	}
	t.Fatalf("no step %s in %v", name, view)
	return ""
}
