package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/auth/authtest"
	"github.com/taskerd/taskerd/internal/testserver"
)

// authPolicy is the policy of the authenticated test server. "right"
// holds every permission the matrix needs, in payments (and its queue
// payq) or everywhere for resources of no namespace; "elsewhere" holds
// the same in another namespace and queue; "powerless" nothing at all.
const authPolicy = `roles:
  admin: ["*"]
  right:
    - "payments:tasker.*:*"
    - "payq:tasker.worker:claim"
    - "tasker.analytics:index"
    - "tasker.webhook:*"
    - "tasker.worker:index"
    - "tasker.event:index"
    - "tasker.health_status:index"
    - "tasker.metrics:index"
    - "tasker.audit:index"
  elsewhere:
    - "customer_success:tasker.*:*"
    - "other_q:tasker.worker:claim"
  powerless: []
  payments_viewer: ["payments:tasker.task:show", "payments:tasker.task:index"]
`

const payYAML = `namespace_name: payments
name: pay
version: 1.0.0
step_templates:
  - {name: collect, handler: "remote:payq", default_retryable: false}
`

const supportYAML = `namespace_name: customer_success
name: refund
version: 1.0.0
step_templates:
  - {name: decide, handler: "remote:other_q"}
`

// authServer is a replica with TASKER_AUTH_MODE=jwt and RS256 keys.
type authServer struct {
	t    *testing.T
	base string
	key  *authtest.Key
	h    http.Handler
	dsn  string
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	key := authtest.NewRSA(t, "k1")
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte(authPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testserver.Start(t, map[string]string{
		"TASKER_AUTH_MODE":           "jwt",
		"TASKER_INSECURE_NO_AUTH":    "false",
		"TASKER_JWT_PUBLIC_KEY_FILE": key.WritePublicPEM(t),
		"TASKER_JWT_ISSUER":          authtest.Issuer,
		"TASKER_JWT_AUDIENCE":        authtest.Audience,
		"TASKER_AUTH_POLICY":         policy,
		"TASKER_METRICS_AUTH":        "true",
	}, nil)
	s := &authServer{t: t, base: r.URL + api.BasePath, key: key, h: r.Server.Handler(), dsn: r.DSN}
	admin := s.token("root", "admin")
	for _, doc := range []string{payYAML, supportYAML} {
		if code, body := s.call("POST", "/templates", admin, doc); code != 201 {
			t.Fatalf("register: %d %s", code, body)
		}
	}
	return s
}

func (s *authServer) token(sub string, roles ...string) string {
	return s.key.Sign(s.t, authtest.Valid(sub, roles...))
}

// send makes one request; token "" sends none.
func (s *authServer) send(method, path, token, body string) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(body, "namespace_name"):
		req.Header.Set("Content-Type", "application/yaml")
	case body != "":
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

func (s *authServer) call(method, path, token, body string) (int, string) {
	s.t.Helper()
	code, _, raw := s.send(method, path, token, body)
	return code, string(raw)
}

func (s *authServer) json(method, path, token, body string, want int) map[string]any {
	s.t.Helper()
	code, _, raw := s.send(method, path, token, body)
	if code != want {
		s.t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, raw)
	}
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return out
}

// newTask creates a payments task (its one step is pending on queue payq).
func (s *authServer) newTask(ns string) string {
	s.t.Helper()
	name := map[string]string{"payments": "pay", "customer_success": "refund"}[ns]
	// The matrix pauses payments and pay (the pause routes' cases) in
	// random order with the others: a fixture that needs its task to run
	// lifts both pauses first.
	s.json("POST", "/handlers/"+ns+"/resume", s.token("root", "admin"), "", 200)
	s.json("POST", "/handlers/"+ns+"/"+name+"/resume", s.token("root", "admin"), "", 200)
	out := s.json("POST", "/tasks", s.token("root", "admin"), fmt.Sprintf(`{"namespace":%q,"name":%q,"context":{}}`, ns, name), 201)
	return out["task_id"].(string)
}

// stepOf is the id of a task's only step.
func (s *authServer) stepOf(taskID string) string {
	s.t.Helper()
	out := s.json("GET", "/tasks/"+taskID+"/workflow_steps", s.token("root", "admin"), "", 200)
	steps := out["workflow_steps"].([]any)
	return steps[0].(map[string]any)["step_id"].(string)
}

// claimed creates a payments task and claims its step as a worker.
func (s *authServer) claimed() (taskID, stepID string) {
	s.t.Helper()
	taskID = s.newTask("payments")
	admin := s.token("root", "admin")
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		out := s.json("POST", "/workers/claim", admin, `{"worker_id":"w","handlers":["remote:payq"],"max":100,"wait_seconds":1}`, 200)
		for _, st := range out["steps"].([]any) {
			st := st.(map[string]any)
			if st["task_id"] == taskID {
				if st["attempt"] != float64(1) {
					s.t.Fatalf("a new task's step claimed at attempt %v: %v", st["attempt"], st)
				}
				return taskID, st["step_id"].(string)
			}
			// Another fixture's step: hand it back failed, so it never lingers.
			s.json("POST", "/steps/"+st["step_id"].(string)+"/fail", admin,
				fmt.Sprintf(`{"attempt":%v,"error":"not mine","retryable":false}`, st["attempt"]), 200)
		}
	}
	s.t.Fatalf("task %s: its step was never claimed", taskID)
	return "", ""
}

// failed creates a payments task in error (its step failed for good).
func (s *authServer) failed() (taskID, stepID string) {
	s.t.Helper()
	taskID, stepID = s.claimed()
	s.json("POST", "/steps/"+stepID+"/fail", s.token("root", "admin"), `{"attempt":1,"error":"card declined","retryable":false}`, 200)
	deadline := time.Now().Add(15 * time.Second)
	for {
		out := s.json("GET", "/tasks/"+taskID, s.token("root", "admin"), "", 200)
		if out["status"] == "error" {
			return taskID, stepID
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("task %s: status %v, want error", taskID, out["status"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// routeCase is how the matrix calls one route: the path with its
// parameters filled, a body, and what the right token gets.
type routeCase struct {
	path, body string
	ok         int
}

// matrixCases builds one request per route of the table, with fixtures of
// its own when the route changes state. A route missing here fails the
// matrix: a new route must say how it is called.
func (s *authServer) matrixCases() map[string]func() routeCase {
	step := func(f func() (string, string)) func(suffix, body string, ok int) func() routeCase {
		return func(suffix, body string, ok int) func() routeCase {
			return func() routeCase {
				taskID, stepID := f()
				return routeCase{"/tasks/" + taskID + "/workflow_steps/" + stepID + suffix, body, ok}
			}
		}
	}
	pending := func() (string, string) { id := s.newTask("payments"); return id, s.stepOf(id) }
	task := func(f func() string, suffix, body string, ok int) func() routeCase {
		return func() routeCase { return routeCase{"/tasks/" + f() + suffix, body, ok} }
	}
	newPay := func() string { return s.newTask("payments") }
	failedTask := func() string { id, _ := s.failed(); return id }
	// A bulk action names one task of payments: the caller elsewhere gets
	// 200 with it counted as not found, the right one acts on it.
	bulk := func(f func() string, path string) func() routeCase {
		return func() routeCase { return routeCase{path, fmt.Sprintf(`{"task_ids":[%q]}`, f()), 200} }
	}
	remote := func(suffix, body string) func() routeCase {
		return func() routeCase { _, stepID := s.claimed(); return routeCase{"/steps/" + stepID + suffix, body, 200} }
	}
	webhook := func() string {
		out := s.json("POST", "/webhooks", s.token("root", "admin"), `{"url":"https://hooks.example.com/x","events":["task.*"]}`, 201)
		return out["webhook_id"].(string)
	}
	fixed := func(path, body string, ok int) func() routeCase {
		return func() routeCase { return routeCase{path, body, ok} }
	}
	version := 0
	return map[string]func() routeCase{
		"GET /health/live":                         fixed("/health/live", "", 200),
		"GET /health/ready":                        fixed("/health/ready", "", 200),
		"GET /health/status":                       fixed("/health/status", "", 200),
		"GET /metrics":                             fixed("/metrics", "", 200),
		"GET /api-docs":                            fixed("/api-docs", "", 301),
		"GET /api-docs/*":                          fixed("/api-docs/doc.json", "", 200),
		"GET /events":                              fixed("/events", "", 200),
		"GET /audit":                               fixed("/audit", "", 200),
		"GET /handlers":                            fixed("/handlers", "", 200),
		"GET /handlers/{namespace}":                fixed("/handlers/payments", "", 200),
		"GET /handlers/{namespace}/{name}":         fixed("/handlers/payments/pay", "", 200),
		"POST /handlers/{namespace}/pause":         fixed("/handlers/payments/pause", "", 200),
		"POST /handlers/{namespace}/resume":        fixed("/handlers/payments/resume", "", 200),
		"POST /handlers/{namespace}/{name}/pause":  fixed("/handlers/payments/pay/pause", "", 200),
		"POST /handlers/{namespace}/{name}/resume": fixed("/handlers/payments/pay/resume", "", 200),
		"POST /templates": func() routeCase {
			version++
			return routeCase{"/templates", strings.Replace(payYAML, "1.0.0", fmt.Sprintf("2.0.%d", version), 1), 201}
		},
		"DELETE /templates/{namespace}/{name}/{version}": func() routeCase {
			version++
			v := fmt.Sprintf("3.0.%d", version)
			s.json("POST", "/templates", s.token("root", "admin"), strings.Replace(payYAML, "1.0.0", v, 1), 201)
			return routeCase{"/templates/payments/pay/" + v, "", 204}
		},
		"GET /tasks":                                             fixed("/tasks", "", 200),
		"POST /tasks":                                            fixed("/tasks", `{"namespace":"payments","name":"pay","context":{}}`, 201),
		"GET /tasks/{task_id}":                                   task(newPay, "", "", 200),
		"PATCH /tasks/{task_id}":                                 task(newPay, "", `{"reason":"customer called"}`, 200),
		"DELETE /tasks/{task_id}":                                task(newPay, "", "", 200),
		"POST /tasks/{task_id}/retry":                            task(failedTask, "/retry", "", 200),
		"POST /tasks/bulk/cancel":                                bulk(newPay, "/tasks/bulk/cancel"),
		"POST /tasks/bulk/retry":                                 bulk(failedTask, "/tasks/bulk/retry"),
		"POST /tasks/{task_id}/resolve":                          task(failedTask, "/resolve", "", 200),
		"GET /tasks/{task_id}/diagram":                           task(newPay, "/diagram", "", 200),
		"GET /tasks/{task_id}/transitions":                       task(newPay, "/transitions", "", 200),
		"GET /tasks/{task_id}/workflow_steps":                    task(newPay, "/workflow_steps", "", 200),
		"GET /tasks/{task_id}/workflow_steps/{step_id}":          step(pending)("", "", 200),
		"PATCH /tasks/{task_id}/workflow_steps/{step_id}":        step(pending)("", `{"retry_limit":5}`, 200),
		"DELETE /tasks/{task_id}/workflow_steps/{step_id}":       step(pending)("", "", 200),
		"POST /tasks/{task_id}/workflow_steps/{step_id}/cancel":  step(pending)("/cancel", "", 200),
		"POST /tasks/{task_id}/workflow_steps/{step_id}/retry":   step(s.failed)("/retry", "", 200),
		"POST /tasks/{task_id}/workflow_steps/{step_id}/resolve": step(s.failed)("/resolve", "", 200),
		"POST /workers/claim":                                    fixed("/workers/claim", `{"worker_id":"w2","handlers":["remote:payq"]}`, 200),
		"GET /workers":                                           fixed("/workers", "", 200),
		"POST /steps/{step_id}/heartbeat":                        remote("/heartbeat", `{"attempt":1}`),
		"POST /steps/{step_id}/complete":                         remote("/complete", `{"attempt":1,"results":{"ok":true}}`),
		"POST /steps/{step_id}/fail":                             remote("/fail", `{"attempt":1,"error":"boom"}`),
		"GET /analytics/performance":                             fixed("/analytics/performance", "", 200),
		"GET /analytics/bottlenecks":                             fixed("/analytics/bottlenecks", "", 200),
		"POST /webhooks":                                         fixed("/webhooks", `{"url":"https://hooks.example.com/y","events":["task.*"]}`, 201),
		"GET /webhooks":                                          fixed("/webhooks", "", 200),
		"GET /webhooks/{webhook_id}":                             func() routeCase { return routeCase{"/webhooks/" + webhook(), "", 200} },
		"DELETE /webhooks/{webhook_id}":                          func() routeCase { return routeCase{"/webhooks/" + webhook(), "", 204} },
		"GET /webhooks/{webhook_id}/deliveries":                  func() routeCase { return routeCase{"/webhooks/" + webhook() + "/deliveries", "", 200} },
		"POST /graphql":                                          fixed("/graphql", `{"query":"{ namespaces { name } }"}`, 200),
		"GET /graphql":                                           fixed("/graphql", "", 200),
		"GET /graphql/{file}":                                    fixed("/graphql/playground.css", "", 200),
	}
}

// tableRoutes walks the real router: every route with its declared access.
func tableRoutes(t *testing.T, h http.Handler) map[string]api.Access {
	t.Helper()
	out := map[string]api.Access{}
	err := chi.Walk(h.(chi.Routes), func(method, pattern string, handler http.Handler, _ ...func(http.Handler) http.Handler) error {
		key := method + " " + strings.TrimPrefix(pattern, api.BasePath)
		g, ok := handler.(interface{ Access() api.Access })
		if !ok {
			t.Errorf("%s is routed without an access declaration: add it to the route table in router.go", key)
			return nil
		}
		out[key] = g.Access()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every route declares who may call it: a permission of Tasker's form, or
// public (and only the probes and the docs are public when status and
// metrics auth are on).
func TestEveryRouteDeclaresItsPermission(t *testing.T) {
	t.Parallel()
	s := startAuthServer(t)
	routes := tableRoutes(t, s.h)
	if len(routes) < 40 {
		t.Fatalf("only %d routes walked", len(routes))
	}
	publicOK := []string{"GET /health/live", "GET /health/ready", "GET /api-docs", "GET /api-docs/*",
		"GET /graphql", "GET /graphql/{file}"} // the playground: its queries are checked like any other
	for key, a := range routes {
		if a.PerOperation {
			// The GraphQL endpoint checks and audits each operation with its
			// REST twin's permission (internal/graphql's auth tests).
			if key != "POST /graphql" || a.Public || a.Permission != "" || a.Audit {
				t.Errorf("%s: per-operation access is for POST /graphql alone, with no permission of its own: %+v", key, a)
			}
			continue
		}
		switch {
		case a.Public && !slices.Contains(publicOK, key):
			t.Errorf("%s is public; only %v may be", key, publicOK)
		case !a.Public && !a.Permission.Valid():
			t.Errorf("%s declares no valid permission (%q)", key, a.Permission)
		case a.Public && a.Permission != "":
			t.Errorf("%s is public but names %s", key, a.Permission)
		}
		mutating := !strings.HasPrefix(key, "GET ")
		worker := strings.HasPrefix(key, "POST /steps/") || key == "POST /workers/claim"
		if mutating && !worker && !a.Audit {
			t.Errorf("%s changes state but is not audited", key)
		}
	}
}

// The spec names each operation's permission, the same as the route table.
func TestSpecNamesEachPermission(t *testing.T) {
	t.Parallel()
	s := startAuthServer(t)
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "swagger", "swagger.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sp struct {
		Paths               map[string]map[string]map[string]any `json:"paths"`
		SecurityDefinitions map[string]map[string]any            `json:"securityDefinitions"`
	}
	if err := json.Unmarshal(raw, &sp); err != nil {
		t.Fatal(err)
	}
	if d := sp.SecurityDefinitions["BearerAuth"]; d["type"] != "apiKey" || d["name"] != "Authorization" || d["in"] != "header" {
		t.Errorf("BearerAuth security definition: %v", d)
	}
	for key, a := range tableRoutes(t, s.h) {
		if a.Public && a.Permission == "" {
			continue
		}
		method, path, _ := strings.Cut(key, " ")
		if a.PerOperation {
			a.Permission = "per operation"
		}
		op := sp.Paths[path][strings.ToLower(method)]
		if op == nil {
			t.Errorf("%s: not in the spec", key)
			continue
		}
		if op["x-permission"] != string(a.Permission) {
			t.Errorf("%s: spec x-permission %v, route table %s", key, op["x-permission"], a.Permission)
		}
		if fmt.Sprint(op["security"]) != "[map[BearerAuth:[]]]" {
			t.Errorf("%s: security %v", key, op["security"])
		}
	}
}

// The route × token matrix: every route of the table with no token, bad
// tokens of every kind, a token without the permission, one with it in
// another namespace, and the right one.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	s := startAuthServer(t)
	good := authtest.Valid("payments-operator@example.com", "right")
	expired := authtest.Valid("payments-operator@example.com", "right")
	expired["exp"], expired["iat"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-3*time.Hour).Unix()
	withClaim := func(k string, v any) authtest.Claims {
		c := authtest.Valid("payments-operator@example.com", "right")
		c[k] = v
		return c
	}
	bad := []struct{ name, token string }{
		{"no token", ""},
		{"malformed", authtest.Malformed},
		{"expired", s.key.Sign(t, expired)},
		{"wrong issuer", s.key.Sign(t, withClaim("iss", "https://evil.test"))},
		{"wrong audience", s.key.Sign(t, withClaim("aud", "another-service"))},
		{"alg none", authtest.AlgNone(t, good)},
		{"HS256 signed with the RSA public key", s.key.HS256WithPublicKey(t, good)},
		{"another key", authtest.NewRSA(t, "k1").Sign(t, good)},
	}
	powerless := s.token("nobody@example.com", "powerless")
	elsewhere := s.token("support@example.com", "elsewhere")
	right := s.key.Sign(t, good)

	cases := s.matrixCases()
	routes := tableRoutes(t, s.h)
	for key, a := range routes {
		build, ok := cases[key]
		if !ok {
			t.Errorf("%s: no matrix case; add one to matrixCases", key)
			continue
		}
		method, _, _ := strings.Cut(key, " ")
		rc := build()
		check := func(who, token string, want int) {
			t.Helper()
			code, h, body := s.send(method, rc.path, token, rc.body)
			if code != want {
				t.Errorf("%s (%s) with %s: %d, want %d: %s", key, rc.path, who, code, want, body)
				return
			}
			switch code {
			case 401:
				challenge := h.Get("WWW-Authenticate")
				wantCode := `error="invalid_token"`
				if token == "" {
					wantCode = "" // RFC 6750 §3.1: no error code when no credentials came
				}
				if !strings.HasPrefix(challenge, "Bearer ") || !strings.Contains(challenge, wantCode) ||
					(token == "" && strings.Contains(challenge, "error=")) {
					t.Errorf("%s with %s: WWW-Authenticate %q", key, who, challenge)
				}
				fallthrough
			case 403, 404:
				if a.PerOperation && code == 401 {
					if h.Get("Content-Type") != "application/json" || !bytes.Contains(body, []byte(`"UNAUTHENTICATED"`)) {
						t.Errorf("%s with %s: not GraphQL's error: %s %s", key, who, h.Get("Content-Type"), body)
					}
					return
				}
				if h.Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s with %s: %d as %s", key, who, code, h.Get("Content-Type"))
				}
				if bytes.Contains(body, []byte("signature")) || bytes.Contains(body, []byte("expired")) {
					t.Errorf("%s with %s: the problem says too much: %s", key, who, body)
				}
			}
		}
		if a.Public {
			for _, b := range bad {
				check(b.name, b.token, rc.ok)
			}
			check("a powerless token", powerless, rc.ok)
			check("the right token", right, rc.ok)
			continue
		}
		for _, b := range bad {
			check(b.name, b.token, http.StatusUnauthorized)
		}
		if a.PerOperation {
			// Past authentication, each GraphQL operation answers for itself
			// (internal/graphql's TestAuthMatrix); the endpoint answers 200.
			check("a token without any permission", powerless, rc.ok)
			check("the right token", right, rc.ok)
			continue
		}
		check("a token without the permission", powerless, http.StatusForbidden)
		check("the permission in another namespace", elsewhere, elsewhereWants(key, a))
		check("the right token", right, rc.ok)
	}
	if len(routes) < 40 {
		t.Fatalf("only %d routes walked", len(routes))
	}
}

// elsewhereWants is what a caller holding the permission only in another
// namespace gets: 404 for an object addressed by id (ids do not leak),
// 403 where it names the namespace itself or the route has none, and the
// route's answer for lists, which it filters.
func elsewhereWants(key string, a api.Access) int {
	switch {
	case a.Global:
		return http.StatusForbidden
	case a.Object != api.ObjectNone:
		return http.StatusNotFound
	case key == "POST /tasks" || key == "POST /templates" || key == "POST /workers/claim":
		return http.StatusForbidden
	default:
		return http.StatusOK
	}
}

// A caller scoped to payments sees only payments tasks, whatever it asks,
// and cannot reach a customer_success task by its id.
func TestScopedCallerSeesOnlyItsNamespace(t *testing.T) {
	t.Parallel()
	s := startAuthServer(t)
	pay1, pay2 := s.newTask("payments"), s.newTask("payments")
	support := s.newTask("customer_success")
	operator := s.token("payments-operator@example.com", "right")

	ids := func(path string) []string {
		out := s.json("GET", path, operator, "", 200)
		var got []string
		for _, tk := range out["tasks"].([]any) {
			got = append(got, tk.(map[string]any)["task_id"].(string))
		}
		slices.Sort(got)
		return got
	}
	want := []string{pay1, pay2}
	slices.Sort(want)
	for _, path := range []string{"/tasks", "/tasks?namespace=customer_success", "/tasks?limit=1"} {
		got := ids(path)
		for _, id := range got {
			if id == support {
				t.Errorf("GET %s listed the customer_success task", path)
			}
		}
		if path == "/tasks" && !slices.Equal(got, want) {
			t.Errorf("GET /tasks: %v, want %v", got, want)
		}
	}
	// Paging stays full: the filter is in the query.
	page := s.json("GET", "/tasks?limit=1", operator, "", 200)
	if page["has_more"] != true {
		t.Errorf("first page of 1 of 2 payments tasks: has_more %v", page["has_more"])
	}
	for _, p := range []struct{ method, path, body string }{
		{"GET", "/tasks/" + support, ""},
		{"GET", "/tasks/" + support + "/workflow_steps", ""},
		{"POST", "/tasks/" + support + "/retry", ""},
		{"DELETE", "/tasks/" + support, ""},
		{"GET", "/tasks/" + support + "/workflow_steps/" + s.stepOf(support), ""},
	} {
		code, body := s.call(p.method, p.path, operator, p.body)
		if code != 404 {
			t.Errorf("%s %s as payments operator: %d, want 404: %s", p.method, p.path, code, body)
		}
	}
	// The same 404 as an id that does not exist: nothing tells them apart.
	_, missing := s.call("GET", "/tasks/0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b", operator, "")
	_, hidden := s.call("GET", "/tasks/"+support, operator, "")
	var a, b map[string]any
	_ = json.Unmarshal([]byte(missing), &a)
	_ = json.Unmarshal([]byte(hidden), &b)
	if a["detail"] != b["detail"] || a["type"] != b["type"] {
		t.Errorf("a hidden task answers differently from a missing one: %v vs %v", b, a)
	}
	// The customer_success task was not cancelled by the refused DELETE.
	if out := s.json("GET", "/tasks/"+support, s.token("root", "admin"), "", 200); out["status"] == "cancelled" {
		t.Error("a refused cancel cancelled the task")
	}
	// Discovery lists only payments.
	out := s.json("GET", "/handlers", operator, "", 200)
	for _, n := range out["namespaces"].([]any) {
		if name := n.(map[string]any)["name"]; name != "payments" {
			t.Errorf("GET /handlers listed %v", name)
		}
	}
}

// Each manual action appears in /tasker/audit with its actor, and so do
// refused attempts; the actor is also on the transitions.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	s := startAuthServer(t)
	admin := s.token("root", "admin")
	alice := s.token("alice@example.com", "right")
	support := s.token("support@example.com", "elsewhere")

	created := s.json("POST", "/tasks", alice, `{"namespace":"payments","name":"pay","context":{}}`, 201)
	taskID := created["task_id"].(string)
	s.json("PATCH", "/tasks/"+taskID, alice, `{"reason":"expedite"}`, 200)
	s.json("DELETE", "/tasks/"+taskID, alice, "", 200)
	failedID, failedStep := s.failed()
	s.json("POST", "/tasks/"+failedID+"/workflow_steps/"+failedStep+"/retry", alice, "", 200)
	s.json("POST", "/templates", alice, strings.Replace(payYAML, "1.0.0", "9.9.9", 1), 201)
	s.call("DELETE", "/templates/payments/pay/9.9.9", alice, "")
	hook := s.json("POST", "/webhooks", alice, `{"url":"https://hooks.example.com/a","events":["task.*"]}`, 201)
	s.call("DELETE", "/webhooks/"+hook["webhook_id"].(string), alice, "")
	// Refused: another namespace's task by id, and a create in payments.
	s.call("DELETE", "/tasks/"+failedID, support, "")
	s.call("POST", "/tasks", support, `{"namespace":"payments","name":"pay"}`)

	type row struct{ actor, action, resourceID, namespace, outcome string }
	var rows []row
	out := s.json("GET", "/audit?limit=100", admin, "", 200)
	for _, e := range out["events"].([]any) {
		e := e.(map[string]any)
		ns, _ := e["namespace"].(string)
		rid, _ := e["resource_id"].(string)
		rows = append(rows, row{e["actor"].(string), e["action"].(string), rid, ns, e["outcome"].(string)})
	}
	for _, want := range []row{
		{"alice@example.com", "tasker.task:create", taskID, "payments", "succeeded"},
		{"alice@example.com", "tasker.task:update", taskID, "payments", "succeeded"},
		{"alice@example.com", "tasker.task:cancel", taskID, "payments", "succeeded"},
		{"alice@example.com", "tasker.workflow_step:retry", failedStep, "payments", "succeeded"},
		{"alice@example.com", "tasker.template:create", "payments.pay@9.9.9", "payments", "succeeded"},
		{"alice@example.com", "tasker.template:destroy", "payments.pay@9.9.9", "payments", "succeeded"},
		{"alice@example.com", "tasker.webhook:create", "", "", "succeeded"},
		{"alice@example.com", "tasker.webhook:destroy", hook["webhook_id"].(string), "", "succeeded"},
		{"support@example.com", "tasker.task:cancel", failedID, "payments", "denied"},
		{"support@example.com", "tasker.task:create", "", "payments", "denied"},
	} {
		if !slices.ContainsFunc(rows, func(r row) bool {
			return r.actor == want.actor && r.action == want.action && r.outcome == want.outcome &&
				(want.resourceID == "" || r.resourceID == want.resourceID) && r.namespace == want.namespace
		}) {
			t.Errorf("no audit event %+v in %+v", want, rows)
		}
	}
	// Filters.
	out = s.json("GET", "/audit?actor=support@example.com", admin, "", 200)
	if n := len(out["events"].([]any)); n != 2 {
		t.Errorf("actor filter: %d events, want 2", n)
	}
	out = s.json("GET", "/audit?resource=webhook&since="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), admin, "", 200)
	if n := len(out["events"].([]any)); n != 2 {
		t.Errorf("resource filter: %d events, want 2", n)
	}
	if code, _ := s.call("GET", "/audit?resource=spaceship", admin, ""); code != 400 {
		t.Errorf("unknown resource: %d, want 400", code)
	}
	// A caller scoped to customer_success sees only its namespace's events
	// (the registration of its template), none of payments'.
	out = s.json("GET", "/audit", support, "", 200)
	for _, e := range out["events"].([]any) {
		if ns := e.(map[string]any)["namespace"]; ns != "customer_success" {
			t.Errorf("a customer_success auditor saw an event of %v", ns)
		}
	}
	// The token's subject is the actor of the transition.
	tr := s.json("GET", "/tasks/"+taskID+"/transitions", admin, "", 200)
	found := false
	for _, x := range tr["transitions"].([]any) {
		x := x.(map[string]any)
		if x["to_state"] == "cancelled" && x["actor"] == "alice@example.com" {
			found = true
		}
	}
	if !found {
		t.Errorf("no cancelled transition by alice@example.com: %v", tr["transitions"])
	}
	// Paging by cursor.
	page := s.json("GET", "/audit?limit=2", admin, "", 200)
	next, _ := page["next_cursor"].(string)
	if page["has_more"] != true || next == "" {
		t.Fatalf("first page: %v", page)
	}
	page2 := s.json("GET", "/audit?limit=2&cursor="+next, admin, "", 200)
	first := page["events"].([]any)[1].(map[string]any)["id"].(float64)
	second := page2["events"].([]any)[0].(map[string]any)["id"].(float64)
	if second >= first {
		t.Errorf("second page starts at %v, after %v", second, first)
	}
	_ = auth.AuditIndex
}

// Context values the schema marks x-sensitive are redacted for callers
// without tasker.task:show_sensitive.
func TestSensitiveContextIsRedacted(t *testing.T) {
	t.Parallel()
	s := startAuthServer(t)
	admin := s.token("root", "admin")
	s.json("POST", "/templates", admin, `namespace_name: payments
name: card
version: 1.0.0
schema:
  type: object
  properties:
    card_number: {type: string, x-sensitive: true}
    amount: {type: number}
    holder:
      type: object
      properties:
        cvv: {type: string, x-sensitive: true}
        name: {type: string}
step_templates:
  - {name: collect, handler: "remote:payq"}
`, 201)
	ctx := `{"card_number":"4111111111111111","amount":12.5,"holder":{"cvv":"123","name":"Ada"}}`
	created := s.json("POST", "/tasks", s.token("viewer", "right", "payments_viewer"),
		`{"namespace":"payments","name":"card","context":`+ctx+`}`, 201)
	id := created["task_id"].(string)

	viewer := s.json("GET", "/tasks/"+id, s.token("v@example.com", "payments_viewer"), "", 200)
	c := viewer["context"].(map[string]any)
	holder := c["holder"].(map[string]any)
	if c["card_number"] != api.Redacted || holder["cvv"] != api.Redacted || c["amount"] != 12.5 || holder["name"] != "Ada" {
		t.Errorf("a viewer without show_sensitive sees %v", c)
	}
	full := s.json("GET", "/tasks/"+id, admin, "", 200)["context"].(map[string]any)
	if full["card_number"] != "4111111111111111" || full["holder"].(map[string]any)["cvv"] != "123" {
		t.Errorf("an admin sees %v", full)
	}
}
