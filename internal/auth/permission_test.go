package auth_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/auth"
)

func TestParseGrant(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    auth.Grant
		wantErr string
	}{
		{in: "*", want: auth.Grant{Scope: "*", Resource: "*", Action: "*"}},
		{in: "tasker.task:create", want: auth.Grant{Scope: "*", Resource: "task", Action: "create"}},
		{in: "payments:tasker.task:*", want: auth.Grant{Scope: "payments", Resource: "task", Action: "*"}},
		{in: "*:tasker.*:index", want: auth.Grant{Scope: "*", Resource: "*", Action: "index"}},
		{in: "remote:refunds:tasker.worker:claim", want: auth.Grant{Scope: "remote:refunds", Resource: "worker", Action: "claim"}},
		{in: " payments:tasker.workflow_step:retry ", want: auth.Grant{Scope: "payments", Resource: "workflow_step", Action: "retry"}},
		{in: "tasker.tasks:create", wantErr: `unknown resource "tasks"`},
		{in: "tasker.task:delete", wantErr: `unknown action "delete"`},
		{in: "payments:task:create", wantErr: "want [scope:]tasker."},
		{in: "tasker.task", wantErr: "want [scope:]tasker."},
		{in: "", wantErr: "want [scope:]tasker."},
		{in: "pay*:tasker.task:index", wantErr: "a scope is"},
		{in: ":tasker.task:index", wantErr: "want [scope:]tasker."},
	} {
		got, err := auth.ParseGrant(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseGrant(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseGrant(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// The matcher: which grants give which permission where.
func TestPermissionMatcher(t *testing.T) {
	t.Parallel()
	policy, err := auth.ParsePolicy([]byte(`roles:
  admin: ["*"]
  payments_operator: ["payments:tasker.task:*", "payments:tasker.workflow_step:*"]
  viewer: ["*:tasker.task:index", "*:tasker.task:show"]
  auditor: ["tasker.audit:index"]
  refunds_worker: ["refunds:tasker.worker:claim"]
  two: ["payments:tasker.task:show", "shipping:tasker.task:show"]
  nothing: []
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		roles []string
		perm  auth.Permission
		ns    string // "" asks for every namespace
		want  bool
	}{
		{[]string{"admin"}, auth.TaskCreate, "payments", true},
		{[]string{"admin"}, auth.AuditIndex, "", true},
		{[]string{"admin"}, auth.Permission("tasker.task:fly"), "", false}, // unknown action: no, and no panic
		{[]string{"admin"}, auth.Permission("garbage"), "", false},
		{[]string{"payments_operator"}, auth.TaskCancel, "payments", true},
		{[]string{"payments_operator"}, auth.StepRetry, "payments", true},
		{[]string{"payments_operator"}, auth.TaskCancel, "customer_success", false},
		{[]string{"payments_operator"}, auth.TaskCancel, "", false}, // not everywhere
		{[]string{"payments_operator"}, auth.TemplateCreate, "payments", false},
		{[]string{"viewer"}, auth.TaskIndex, "anything", true},
		{[]string{"viewer"}, auth.TaskIndex, "", true},
		{[]string{"viewer"}, auth.TaskCreate, "anything", false},
		{[]string{"viewer"}, auth.TaskShowSensitive, "anything", false},
		{[]string{"auditor"}, auth.AuditIndex, "", true},
		{[]string{"auditor"}, auth.TaskIndex, "x", false},
		{[]string{"refunds_worker"}, auth.WorkerClaim, "refunds", true},
		{[]string{"refunds_worker"}, auth.WorkerClaim, "shipping", false},
		{[]string{"two"}, auth.TaskShow, "shipping", true},
		{[]string{"nothing"}, auth.TaskShow, "x", false},
		{[]string{"unknown_role"}, auth.TaskShow, "x", false},
		{nil, auth.TaskShow, "x", false},
		{[]string{"viewer", "payments_operator"}, auth.TaskRetry, "payments", true},
	} {
		p := auth.NewPrincipal("alice", tc.roles, policy)
		if got := p.Can(tc.perm, tc.ns); got != tc.want {
			t.Errorf("%v can %s in %q = %v, want %v", tc.roles, tc.perm, tc.ns, got, tc.want)
		}
	}
	s := auth.NewPrincipal("bob", []string{"two"}, policy).Scope(auth.TaskShow)
	if s.All() || s.Empty() || !slices.Equal(s.Namespaces(), []string{"payments", "shipping"}) {
		t.Errorf("scope of two roles: all=%v namespaces=%v", s.All(), s.Namespaces())
	}
	if !auth.Anonymous().Can(auth.AuditIndex, "") {
		t.Error("the anonymous principal of auth mode none may do everything")
	}
	var nobody *auth.Principal
	if nobody.Can(auth.TaskShow, "x") {
		t.Error("a nil principal may do nothing")
	}
}

func TestDefaultPolicy(t *testing.T) {
	t.Parallel()
	p := auth.DefaultPolicy()
	if !slices.Equal(p.Roles(), []string{"admin", "viewer"}) {
		t.Fatalf("built-in roles %v", p.Roles())
	}
	viewer := auth.NewPrincipal("v", []string{"viewer"}, p)
	for _, perm := range []auth.Permission{auth.TaskIndex, auth.TaskShow, auth.StepShow, auth.HandlerIndex, auth.AuditIndex} {
		if !viewer.Can(perm, "") {
			t.Errorf("viewer lacks %s", perm)
		}
	}
	for _, perm := range []auth.Permission{auth.TaskCreate, auth.TaskCancel, auth.TaskShowSensitive, auth.WorkerClaim, auth.TemplateCreate} {
		if viewer.Can(perm, "x") {
			t.Errorf("viewer holds %s", perm)
		}
	}
}

func TestParsePolicyErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ doc, want string }{
		{"roles: {}", "no roles"},
		{"rolez: {a: ['*']}", "field rolez not found"},
		{"roles: {a: ['tasker.task:explode']}", `role "a"`},
		{"roles: [", "auth policy"},
	} {
		if _, err := auth.ParsePolicy([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePolicy(%q) = %v, want error containing %q", tc.doc, err, tc.want)
		}
	}
}
