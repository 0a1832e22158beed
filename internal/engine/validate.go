package engine

import (
	"cmp"
	"fmt"
)

// Limits on what a client sets on a task. The REST and GraphQL APIs both
// check requests with the functions below, so the two cannot drift apart.
const (
	// MaxTags is the most tags a task may carry.
	MaxTags = 100
	// MaxTagLen is the longest tag, in bytes.
	MaxTagLen = 255
	// MaxReasonLen is the longest reason, in bytes.
	MaxReasonLen = 4096
	// MaxIdempotencyKeyLen is the longest idempotency key, in bytes.
	MaxIdempotencyKeyLen = 255
	// MinPriority and MaxPriority bound a task's priority.
	MinPriority, MaxPriority = -1000, 1000
	// DefaultNamespace is the namespace of a request that names none.
	DefaultNamespace = "default"
)

// PrepareCreateTask fills the request's defaults and lists what is wrong
// with its fields on their own, before any template is looked up (the
// template's schema is checked by CreateTask). Pointers are into the
// request as a JSON document.
func PrepareCreateTask(req *CreateTaskRequest) []FieldError {
	var problems []FieldError
	if req.Name == "" {
		problems = append(problems, FieldError{Pointer: "/name", Message: "name is required"})
	}
	req.Namespace = cmp.Or(req.Namespace, DefaultNamespace)
	if len(req.Context) > 0 && req.Context[0] != '{' && string(req.Context) != "null" {
		problems = append(problems, FieldError{Pointer: "/context", Message: "context must be a JSON object"})
	}
	if req.Priority < MinPriority || req.Priority > MaxPriority {
		problems = append(problems, FieldError{Pointer: "/priority",
			Message: fmt.Sprintf("priority must be between %d and %d", MinPriority, MaxPriority)})
	}
	problems = append(problems, CheckTags(req.Tags)...)
	if len(req.IdempotencyKey) > MaxIdempotencyKeyLen {
		problems = append(problems, FieldError{Pointer: "/idempotency_key", Message: fmt.Sprintf("at most %d characters", MaxIdempotencyKeyLen)})
	}
	return problems
}

// CheckTaskEdit lists what is wrong with a change of a task's reason and
// tags (nil: left alone); asking for no change at all is wrong too.
func CheckTaskEdit(reason *string, tags *[]string) []FieldError {
	var problems []FieldError
	if reason == nil && tags == nil {
		problems = append(problems, FieldError{Pointer: "", Message: "nothing to change: send reason, tags or both"})
	}
	if reason != nil && len(*reason) > MaxReasonLen {
		problems = append(problems, FieldError{Pointer: "/reason", Message: fmt.Sprintf("at most %d bytes", MaxReasonLen)})
	}
	if tags != nil {
		problems = append(problems, CheckTags(*tags)...)
	}
	return problems
}

// CheckTags refuses empty, overlong and too many tags.
func CheckTags(tags []string) []FieldError {
	var out []FieldError
	if len(tags) > MaxTags {
		out = append(out, FieldError{Pointer: "/tags", Message: fmt.Sprintf("at most %d tags", MaxTags)})
	}
	for i, tag := range tags {
		if tag == "" || len(tag) > MaxTagLen {
			out = append(out, FieldError{Pointer: fmt.Sprintf("/tags/%d", i), Message: fmt.Sprintf("a tag is 1 to %d characters", MaxTagLen)})
		}
	}
	return out
}
