package graphql_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/auth/authtest"
)

// authPolicy mirrors internal/api's auth tests: "right" may do anything in
// payments, "elsewhere" the same in customer_success, "powerless" nothing,
// "lister" only list payments tasks.
const authPolicy = `roles:
  admin: ["*"]
  right: ["payments:tasker.*:*"]
  elsewhere: ["customer_success:tasker.*:*"]
  powerless: []
  lister: ["payments:tasker.task:index"]
`

const payYAML = `namespace_name: payments
name: pay
version: 1.0.0
step_templates:
  - {name: collect, handler: "remote:payq"}
  - {name: settle, handler: "remote:payq", depends_on_step: collect}
`

const supportYAML = `namespace_name: customer_success
name: refund
version: 1.0.0
step_templates:
  - {name: decide, handler: "remote:other_q"}
`

type authServer struct {
	*server
	key *authtest.Key
}

func startAuth(t *testing.T) *authServer {
	t.Helper()
	key := authtest.NewRSA(t, "k1")
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte(authPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &authServer{server: start(t, map[string]string{
		"TASKER_AUTH_MODE":           "jwt",
		"TASKER_INSECURE_NO_AUTH":    "false",
		"TASKER_JWT_PUBLIC_KEY_FILE": key.WritePublicPEM(t),
		"TASKER_JWT_ISSUER":          authtest.Issuer,
		"TASKER_JWT_AUDIENCE":        authtest.Audience,
		"TASKER_AUTH_POLICY":         policy,
	}), key: key}
	admin := s.token("root", "admin")
	s.register(admin, payYAML)
	s.register(admin, supportYAML)
	return s
}

func (s *authServer) token(sub string, roles ...string) string {
	return s.key.Sign(s.t, authtest.Valid(sub, roles...))
}

// payTask makes a payments task and returns its id and its first step's.
func (s *authServer) payTask() (string, string) {
	s.t.Helper()
	admin := s.token("root", "admin")
	id := s.createREST(admin, "payments", "pay")
	_, v := s.rest("GET", "/tasks/"+id, admin, "")
	return id, stepID(s.t, v, "collect")
}

// The auth matrix of every GraphQL operation: no or bad token, a token
// without the permission, one with it in another namespace, one limited
// to listing, and the right one, each answering as the operation's REST
// twin does (401, 403, 404 for another namespace's object, filtered
// lists); refusals and mutations land in the audit trail.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	s := startAuth(t)
	good := authtest.Valid("payments-operator@example.com", "right")
	expired := authtest.Valid("payments-operator@example.com", "right")
	expired["exp"], expired["iat"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-3*time.Hour).Unix()
	bad := map[string]string{
		"no token":    "",
		"malformed":   authtest.Malformed,
		"expired":     s.key.Sign(t, expired),
		"alg none":    authtest.AlgNone(t, good),
		"another key": authtest.NewRSA(t, "k1").Sign(t, good),
	}
	right := s.key.Sign(t, good)
	powerless := s.token("nobody@example.com", "powerless")
	elsewhere := s.token("support@example.com", "elsewhere")
	lister := s.token("lister@example.com", "lister")

	listed, _ := s.payTask()
	type op struct {
		name string
		// build makes the query and variables on fresh objects.
		build func() (string, map[string]any)
		// what each caller gets: an error code, or "" for data.
		right, elsewhere, lister string
	}
	onTask := func(q string) func() (string, map[string]any) {
		return func() (string, map[string]any) { id, _ := s.payTask(); return q, map[string]any{"id": id} }
	}
	onStep := func(q string) func() (string, map[string]any) {
		return func() (string, map[string]any) { _, st := s.payTask(); return q, map[string]any{"id": st} }
	}
	fixed := func(q string) func() (string, map[string]any) {
		return func() (string, map[string]any) { return q, nil }
	}
	ops := []op{
		{"tasks", fixed(`{ tasks(first: 100) { edges { node { id namespace } } } }`), "", "", ""},
		{"task", onTask(`query($id: UUID!) { task(id: $id) { id steps { name } } }`), "", "NOT_FOUND", "FORBIDDEN"},
		{"step", onStep(`query($id: UUID!) { step(id: $id) { id } }`), "", "NOT_FOUND", "FORBIDDEN"},
		{"handlers", fixed(`{ handlers(namespace: "payments") { name } }`), "", "NOT_FOUND", "FORBIDDEN"},
		{"namespaces", fixed(`{ namespaces { name } }`), "", "", "FORBIDDEN"},
		{"createTask", fixed(`mutation { createTask(input: {namespace: "payments", name: "pay"}) { task { id } } }`), "", "FORBIDDEN", "FORBIDDEN"},
		{"updateTask", onTask(`mutation($id: UUID!) { updateTask(id: $id, input: {reason: "r"}) { id } }`), "", "NOT_FOUND", "FORBIDDEN"},
		{"cancelTask", onTask(`mutation($id: UUID!) { cancelTask(id: $id) { id } }`), "", "NOT_FOUND", "FORBIDDEN"},
		// A pending step cannot be retried: CONFLICT shows the caller got past the checks.
		{"retryStep", onStep(`mutation($id: UUID!) { retryStep(id: $id) { id } }`), "CONFLICT", "NOT_FOUND", "FORBIDDEN"},
		{"resolveStep", onStep(`mutation($id: UUID!) { resolveStep(id: $id) { id } }`), "", "NOT_FOUND", "FORBIDDEN"},
		{"cancelStep", onStep(`mutation($id: UUID!) { cancelStep(id: $id) { id } }`), "", "NOT_FOUND", "FORBIDDEN"},
	}
	for _, o := range ops {
		q, vars := o.build()
		for who, token := range bad {
			g := s.gql(token, q, vars)
			if g.status != 401 || g.code() != "UNAUTHENTICATED" || len(g.Data) > 0 {
				t.Errorf("%s with %s: %d %+v", o.name, who, g.status, g.Errors)
			}
		}
		check := func(who, token, want string) {
			t.Helper()
			q, vars := o.build()
			g := s.gql(token, q, vars)
			if g.status != 200 || g.code() != want {
				t.Errorf("%s as %s: %d %q %+v, want %q", o.name, who, g.status, g.code(), g.Errors, want)
			}
		}
		check("powerless", powerless, "FORBIDDEN")
		check("elsewhere", elsewhere, o.elsewhere)
		check("lister", lister, o.lister)
		check("right", right, o.right)
	}

	// Lists are filtered by scope, as REST's are.
	var conn connection
	s.gql(elsewhere, `{ tasks(first: 100) { edges { node { id } } } }`, nil).field(t, "tasks", &conn)
	if slices.Contains(conn.ids(), listed) {
		t.Errorf("a customer_success caller listed a payments task")
	}
	s.gql(right, `{ tasks(first: 100) { edges { node { id } } } }`, nil).field(t, "tasks", &conn)
	if !slices.Contains(conn.ids(), listed) {
		t.Errorf("a payments caller did not list a payments task")
	}
	var namespaces []struct{ Name string }
	s.gql(elsewhere, `{ namespaces { name } }`, nil).field(t, "namespaces", &namespaces)
	if len(namespaces) != 1 || namespaces[0].Name != "customer_success" {
		t.Errorf("namespaces for customer_success: %+v", namespaces)
	}
	// A task listed with only tasker.task:index shows its summary, not its
	// steps or context (REST's list has neither; show needs tasker.task:show).
	g := s.gql(lister, `{ tasks(first: 1) { edges { node { id status steps { name } } } } }`, nil)
	if g.code() != "FORBIDDEN" || len(g.Errors[0].Path) == 0 || fmt.Sprint(g.Errors[0].Path[len(g.Errors[0].Path)-1]) != "steps" {
		t.Errorf("steps with tasker.task:index alone: %+v", g.Errors)
	}
	// A hidden task answers exactly like a missing one.
	hidden := s.gql(elsewhere, `query($id: UUID!) { task(id: $id) { id } }`, map[string]any{"id": listed})
	missing := s.gql(elsewhere, `query($id: UUID!) { task(id: $id) { id } }`, map[string]any{"id": uuid.NewString()})
	if hidden.Errors[0].Message != missing.Errors[0].Message || hidden.code() != missing.code() {
		t.Errorf("hidden %+v, missing %+v", hidden.Errors, missing.Errors)
	}
}

// GraphQL operations land in the audit trail as their REST twins do:
// same actor, action, object, namespace, status and outcome.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	s := startAuth(t)
	admin := s.token("root", "admin")
	alice := s.token("alice@example.com", "right")
	support := s.token("support@example.com", "elsewhere")

	restTask, _ := s.payTask()
	gqlTask, _ := s.payTask()
	if code, _ := s.rest("DELETE", "/tasks/"+restTask, alice, ""); code != 200 {
		t.Fatalf("REST cancel: %d", code)
	}
	s.gql(alice, `mutation($id: UUID!) { cancelTask(id: $id) { id } }`, map[string]any{"id": gqlTask}).field(t, "cancelTask", &struct{}{})
	s.rest("DELETE", "/tasks/"+restTask, support, "")
	s.gql(support, `mutation($id: UUID!) { cancelTask(id: $id) { id } }`, map[string]any{"id": gqlTask})
	var created struct{ Task struct{ ID string } }
	s.gql(alice, `mutation { createTask(input: {namespace: "payments", name: "pay"}) { task { id } } }`, nil).field(t, "createTask", &created)
	s.gql(support, `mutation { createTask(input: {namespace: "payments", name: "pay"}) { task { id } } }`, nil)

	type row struct {
		actor, action, resourceID, namespace, outcome, path string
		status                                              float64
	}
	var rows []row
	_, out := s.rest("GET", "/audit?limit=100", admin, "")
	for _, e := range out["events"].([]any) {
		e := e.(map[string]any)
		ns, _ := e["namespace"].(string)
		rid, _ := e["resource_id"].(string)
		rows = append(rows, row{e["actor"].(string), e["action"].(string), rid, ns, e["outcome"].(string), e["path"].(string), e["status"].(float64)})
	}
	find := func(want row) {
		t.Helper()
		if !slices.ContainsFunc(rows, func(r row) bool { return r == want }) {
			t.Errorf("no audit event %+v in %+v", want, rows)
		}
	}
	for _, twin := range []struct{ id, path string }{{restTask, "/tasker/tasks/" + restTask}, {gqlTask, "/tasker/graphql"}} {
		find(row{"alice@example.com", "tasker.task:cancel", twin.id, "payments", "succeeded", twin.path, 200})
		find(row{"support@example.com", "tasker.task:cancel", twin.id, "payments", "denied", twin.path, 404})
	}
	find(row{"alice@example.com", "tasker.task:create", created.Task.ID, "payments", "succeeded", "/tasker/graphql", 201})
	find(row{"support@example.com", "tasker.task:create", "", "payments", "denied", "/tasker/graphql", 403})
	// Reads are not audited, refused ones are.
	s.gql(alice, `{ namespaces { name } }`, nil)
	s.gql(s.token("nobody@example.com", "powerless"), `{ namespaces { name } }`, nil)
	_, out = s.rest("GET", "/audit?resource=handler", admin, "")
	events := out["events"].([]any)
	if len(events) != 1 || events[0].(map[string]any)["outcome"] != "denied" || !strings.HasSuffix(events[0].(map[string]any)["path"].(string), "/graphql") {
		t.Errorf("handler events: %v", events)
	}
}
