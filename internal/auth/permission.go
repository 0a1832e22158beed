// Package auth decides who is calling and what they may do: it verifies
// bearer tokens (JWT), maps their roles to permissions through a policy, and
// answers permission checks scoped by namespace. It knows nothing of HTTP
// routing or SQL; internal/api asks it questions.
package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Permission is one of Tasker's permissions, written tasker.<resource>:<action>,
// e.g. tasker.task:create.
type Permission string

// Resources a permission may name.
const (
	ResourceTask         = "task"
	ResourceWorkflowStep = "workflow_step"
	ResourceHandler      = "handler"
	ResourceTemplate     = "template"
	ResourceHealthStatus = "health_status"
	ResourceMetrics      = "metrics"
	ResourceAnalytics    = "analytics"
	ResourceWebhook      = "webhook"
	ResourceWorker       = "worker"
	ResourceAudit        = "audit"
	ResourceEvent        = "event"
)

// Actions a permission may name.
const (
	ActionIndex         = "index"
	ActionShow          = "show"
	ActionCreate        = "create"
	ActionUpdate        = "update"
	ActionDestroy       = "destroy"
	ActionRetry         = "retry"
	ActionResolve       = "resolve"
	ActionCancel        = "cancel"
	ActionClaim         = "claim"
	ActionShowSensitive = "show_sensitive"
	ActionPause         = "pause"
	ActionResume        = "resume"
)

// Resources and Actions list every name a permission or grant may use;
// a policy naming anything else is refused when it is loaded.
var (
	Resources = []string{ResourceTask, ResourceWorkflowStep, ResourceHandler, ResourceTemplate, ResourceHealthStatus,
		ResourceMetrics, ResourceAnalytics, ResourceWebhook, ResourceWorker, ResourceAudit, ResourceEvent}
	Actions = []string{ActionIndex, ActionShow, ActionCreate, ActionUpdate, ActionDestroy, ActionRetry, ActionResolve,
		ActionCancel, ActionClaim, ActionShowSensitive, ActionPause, ActionResume}
)

// prefix starts every permission.
const prefix = "tasker."

// Perm builds tasker.<resource>:<action>.
func Perm(resource, action string) Permission {
	return Permission(prefix + resource + ":" + action)
}

// The permissions the API checks.
var (
	TaskIndex         = Perm(ResourceTask, ActionIndex)
	TaskShow          = Perm(ResourceTask, ActionShow)
	TaskCreate        = Perm(ResourceTask, ActionCreate)
	TaskUpdate        = Perm(ResourceTask, ActionUpdate)
	TaskRetry         = Perm(ResourceTask, ActionRetry)
	TaskResolve       = Perm(ResourceTask, ActionResolve)
	TaskCancel        = Perm(ResourceTask, ActionCancel)
	TaskShowSensitive = Perm(ResourceTask, ActionShowSensitive)
	StepIndex         = Perm(ResourceWorkflowStep, ActionIndex)
	StepShow          = Perm(ResourceWorkflowStep, ActionShow)
	StepUpdate        = Perm(ResourceWorkflowStep, ActionUpdate)
	StepRetry         = Perm(ResourceWorkflowStep, ActionRetry)
	StepResolve       = Perm(ResourceWorkflowStep, ActionResolve)
	StepCancel        = Perm(ResourceWorkflowStep, ActionCancel)
	HandlerIndex      = Perm(ResourceHandler, ActionIndex)
	HandlerShow       = Perm(ResourceHandler, ActionShow)
	HandlerPause      = Perm(ResourceHandler, ActionPause)
	HandlerResume     = Perm(ResourceHandler, ActionResume)
	TemplateCreate    = Perm(ResourceTemplate, ActionCreate)
	TemplateDestroy   = Perm(ResourceTemplate, ActionDestroy)
	HealthStatusIndex = Perm(ResourceHealthStatus, ActionIndex)
	MetricsIndex      = Perm(ResourceMetrics, ActionIndex)
	AnalyticsIndex    = Perm(ResourceAnalytics, ActionIndex)
	WebhookIndex      = Perm(ResourceWebhook, ActionIndex)
	WebhookShow       = Perm(ResourceWebhook, ActionShow)
	WebhookCreate     = Perm(ResourceWebhook, ActionCreate)
	WebhookDestroy    = Perm(ResourceWebhook, ActionDestroy)
	WorkerIndex       = Perm(ResourceWorker, ActionIndex)
	WorkerClaim       = Perm(ResourceWorker, ActionClaim)
	AuditIndex        = Perm(ResourceAudit, ActionIndex)
	EventIndex        = Perm(ResourceEvent, ActionIndex)
)

// Split returns the resource and action of p; ok is false when p is not
// tasker.<known resource>:<known action>.
func (p Permission) Split() (resource, action string, ok bool) {
	rest, found := strings.CutPrefix(string(p), prefix)
	if !found {
		return "", "", false
	}
	resource, action, found = strings.Cut(rest, ":")
	if !found || !slices.Contains(Resources, resource) || !slices.Contains(Actions, action) {
		return "", "", false
	}
	return resource, action, true
}

// Resource is the resource p names ("" when p is malformed).
func (p Permission) Resource() string {
	r, _, _ := p.Split()
	return r
}

// Valid says whether p names a known resource and action.
func (p Permission) Valid() bool {
	_, _, ok := p.Split()
	return ok
}

// Any is the scope that stands for every namespace (or queue).
const Any = "*"

// Grant is one entry of a role: an optional scope (a namespace, a worker
// queue name, or "*"), then a permission whose resource and action may each
// be "*". "*" alone grants everything everywhere. A grant without a scope
// applies in every namespace, like "*:".
//
//   - everything
//     *:tasker.task:index            list tasks in every namespace
//     payments:tasker.task:*         every task action in payments
//     refunds:tasker.worker:claim    claim steps of the queue remote:refunds
type Grant struct {
	Scope, Resource, Action string
}

// ParseGrant parses and checks one grant; unknown resources and actions
// are errors, so a typo in a policy stops the server instead of silently
// granting nothing.
func ParseGrant(s string) (Grant, error) {
	s = strings.TrimSpace(s)
	if s == Any {
		return Grant{Scope: Any, Resource: Any, Action: Any}, nil
	}
	scope, perm := Any, s
	if !strings.HasPrefix(s, prefix) {
		i := strings.Index(s, ":"+prefix)
		if i <= 0 {
			return Grant{}, fmt.Errorf("grant %q: want [scope:]tasker.<resource>:<action>, or *", s)
		}
		scope, perm = s[:i], s[i+1:]
		if strings.ContainsAny(scope, " \t*") && scope != Any {
			return Grant{}, fmt.Errorf("grant %q: a scope is a namespace, a queue name or *", s)
		}
	}
	rest := strings.TrimPrefix(perm, prefix)
	resource, action, ok := strings.Cut(rest, ":")
	if !ok || resource == "" || action == "" {
		return Grant{}, fmt.Errorf("grant %q: want [scope:]tasker.<resource>:<action>, or *", s)
	}
	if resource != Any && !slices.Contains(Resources, resource) {
		return Grant{}, fmt.Errorf("grant %q: unknown resource %q (known: %s)", s, resource, strings.Join(Resources, ", "))
	}
	if action != Any && !slices.Contains(Actions, action) {
		return Grant{}, fmt.Errorf("grant %q: unknown action %q (known: %s)", s, action, strings.Join(Actions, ", "))
	}
	return Grant{Scope: scope, Resource: resource, Action: action}, nil
}

// String writes the grant back in policy syntax.
func (g Grant) String() string {
	if g.Scope == Any && g.Resource == Any && g.Action == Any {
		return Any
	}
	return g.Scope + ":" + prefix + g.Resource + ":" + g.Action
}

// covers says whether g grants resource:action, whatever the scope.
func (g Grant) covers(resource, action string) bool {
	return (g.Resource == Any || g.Resource == resource) && (g.Action == Any || g.Action == action)
}
