package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/store"
)

// Limits of one bulk call. A filter matching more is refused rather than
// half done: the caller narrows it (created_before, status) and repeats.
const (
	// MaxBulkFilterTasks is how many tasks a bulk filter may match.
	MaxBulkFilterTasks = 10_000
	// MaxBulkTaskIDs is how many ids a bulk call may name.
	MaxBulkTaskIDs = 1_000
)

// BulkTaskRequest is the body of POST /tasks/bulk/cancel and
// /tasks/bulk/retry: exactly one of filter and task_ids.
type BulkTaskRequest struct {
	// Filter selects tasks as GET /tasks does, within the caller's
	// namespaces; at least one criterion, at most 10,000 matching tasks.
	Filter *BulkTaskFilter `json:"filter,omitempty"`
	// TaskIDs names the tasks, at most 1,000 (a repeated id counts once).
	// Ids of no task, or of a task outside the caller's namespaces, count
	// as not_found and are never touched.
	TaskIDs []string `json:"task_ids,omitempty" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b"`
}

// BulkTaskFilter holds the filters of GET /tasks, under the same names.
type BulkTaskFilter struct {
	// Namespace of the template.
	Namespace string `json:"namespace,omitempty" example:"shop"`
	// Name of the template.
	Name string `json:"name,omitempty" example:"checkout"`
	// Version of the template.
	Version string `json:"version,omitempty" example:"1.0.0"`
	// Status keeps tasks in any of these states.
	Status []string `json:"status,omitempty" enums:"pending,in_progress,complete,error,cancelled,resolved_manually" example:"error"`
	// Initiator of the task.
	Initiator string `json:"initiator,omitempty" example:"web"`
	// SourceSystem of the task.
	SourceSystem string `json:"source_system,omitempty" example:"storefront"`
	// Tag keeps tasks carrying all these tags.
	Tag []string `json:"tag,omitempty" example:"vip"`
	// CreatedAfter keeps tasks created strictly after this time.
	CreatedAfter *time.Time `json:"created_after,omitempty" example:"2025-01-01T00:00:00Z"`
	// CreatedBefore keeps tasks created strictly before this time.
	CreatedBefore *time.Time `json:"created_before,omitempty" example:"2025-01-31T00:00:00Z"`
}

// BulkCancelResponse counts what a bulk cancel did. matched = cancelled +
// skipped; with task_ids, matched + not_found is the number of distinct ids.
type BulkCancelResponse struct {
	// Matched is how many tasks the filter or the ids selected.
	Matched int `json:"matched" example:"1000"`
	// Cancelled is how many of them were cancelled.
	Cancelled int `json:"cancelled" example:"990"`
	// Skipped is how many were left as they were: their state was not
	// pending, in_progress or error.
	Skipped int `json:"skipped" example:"10"`
	// SkippedByState splits skipped by the state the tasks were in.
	SkippedByState map[string]int `json:"skipped_by_state" example:"complete:10"`
	// NotFound counts ids of no task (or of another namespace's), and
	// tasks deleted between selection and action.
	NotFound int `json:"not_found" example:"0"`
}

// BulkRetryResponse counts what a bulk retry did. matched = retried +
// skipped; with task_ids, matched + not_found is the number of distinct ids.
type BulkRetryResponse struct {
	// Matched is how many tasks the filter or the ids selected.
	Matched int `json:"matched" example:"25"`
	// Retried is how many of them were retried.
	Retried int `json:"retried" example:"20"`
	// Skipped is how many were left as they were: they were not in error.
	Skipped int `json:"skipped" example:"5"`
	// SkippedByState splits skipped by the state the tasks were in.
	SkippedByState map[string]int `json:"skipped_by_state" example:"complete:5"`
	// NotFound counts ids of no task (or of another namespace's), and
	// tasks deleted between selection and action.
	NotFound int `json:"not_found" example:"0"`
}

// bulkCancel cancels many tasks.
//
//	@Summary		Cancel many tasks
//	@Description	Cancels the tasks a filter (the filters of GET /tasks, at least one, at most 10,000 matching tasks) or a list of ids (at most 1,000) selects, exactly one of the two, each as DELETE /tasks/{task_id} would: same transitions with the caller as actor, same events and webhooks. Tasks that are pending, in_progress or in error are cancelled; the others (complete, resolved_manually, cancelled) are skipped and counted by state — the admin override that cancels a complete task is single-task only. Work proceeds in batches of 100 tasks, each its own transaction; if one fails, the batches before it stay done, and repeating the call is safe. A caller scoped to some namespaces acts only in them; ids elsewhere count as not_found. Permission: tasker.task:cancel.
//	@Tags			tasks
//	@Accept			json
//	@Produce		json
//	@Param			selection	body		BulkTaskRequest		true	"filter or task_ids"
//	@Success		200			{object}	BulkCancelResponse
//	@Failure		400			{object}	Problem	"Malformed JSON or query"
//	@Failure		413			{object}	Problem	"Body too large"
//	@Failure		415			{object}	Problem	"Not JSON"
//	@Failure		422			{object}	Problem	"Both or neither of filter and task_ids, an empty filter, bad ids or states, too many ids, or a filter matching too many tasks"
//	@Failure		401			{object}	Problem	"No valid bearer token"
//	@Failure		403			{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:cancel"
//	@Router			/tasks/bulk/cancel [post]
func (h *taskHandlers) bulkCancel(w http.ResponseWriter, r *http.Request) {
	sel, ok := h.bulkSelection(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.bulkContext(w, r)
	defer cancel()
	res, err := h.engine.CancelTasks(ctx, sel.ids, actor(r))
	out := BulkCancelResponse{Cancelled: res.Changed}
	out.Matched, out.Skipped, out.SkippedByState, out.NotFound = sel.counts(res)
	h.bulkAnswer(w, r, "cancelled", out.Matched, out.Cancelled, out.Skipped, out.NotFound, err, out)
}

// bulkRetry retries many failed tasks.
//
//	@Summary		Retry many failed tasks
//	@Description	Retries the tasks a filter (the filters of GET /tasks, at least one, at most 10,000 matching tasks) or a list of ids (at most 1,000) selects, exactly one of the two, each as POST /tasks/{task_id}/retry would: every failed step back to pending with a fresh retry budget, same transitions with the caller as actor, same events and webhooks. Tasks in error are retried; the others are skipped and counted by state. Work proceeds in batches of 100 tasks, each its own transaction; if one fails, the batches before it stay done, and repeating the call is safe. A caller scoped to some namespaces acts only in them; ids elsewhere count as not_found. Permission: tasker.task:retry.
//	@Tags			tasks
//	@Accept			json
//	@Produce		json
//	@Param			selection	body		BulkTaskRequest		true	"filter or task_ids"
//	@Success		200			{object}	BulkRetryResponse
//	@Failure		400			{object}	Problem	"Malformed JSON or query"
//	@Failure		413			{object}	Problem	"Body too large"
//	@Failure		415			{object}	Problem	"Not JSON"
//	@Failure		422			{object}	Problem	"Both or neither of filter and task_ids, an empty filter, bad ids or states, too many ids, or a filter matching too many tasks"
//	@Failure		401			{object}	Problem	"No valid bearer token"
//	@Failure		403			{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:retry"
//	@Router			/tasks/bulk/retry [post]
func (h *taskHandlers) bulkRetry(w http.ResponseWriter, r *http.Request) {
	sel, ok := h.bulkSelection(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.bulkContext(w, r)
	defer cancel()
	res, err := h.engine.RetryTasks(ctx, sel.ids, actor(r))
	out := BulkRetryResponse{Retried: res.Changed}
	out.Matched, out.Skipped, out.SkippedByState, out.NotFound = sel.counts(res)
	h.bulkAnswer(w, r, "retried", out.Matched, out.Retried, out.Skipped, out.NotFound, err, out)
}

// bulkSelected is what a bulk request selected.
type bulkSelected struct {
	// ids are the tasks found, within the caller's scope.
	ids []uuid.UUID
	// asked is how many distinct ids the request named; for a filter,
	// len(ids).
	asked int
}

// bulkSelection checks the whole request, then answers the tasks it
// selects. ok is false when it has answered the request itself (nothing
// has changed then).
func (h *taskHandlers) bulkSelection(w http.ResponseWriter, r *http.Request) (_ bulkSelected, ok bool) {
	var none bulkSelected
	if !noQuery(w, r) {
		return none, false
	}
	var body BulkTaskRequest
	if err := DecodeJSON(r, &body); err != nil {
		WriteError(w, r, h.logger, err)
		return none, false
	}
	sel, problems := bulkTaskSelection(body)
	if len(problems) > 0 {
		detail := problems[0].Detail
		if len(problems) > 1 {
			detail = fmt.Sprintf("the request has %d errors, each listed with a JSON pointer", len(problems))
		}
		WriteProblem(w, r, ValidationFailed(detail, problems...))
		return none, false
	}
	// A scoped caller's selection is cut to its namespaces in SQL, as the
	// list is: ids elsewhere are simply not found.
	if s := scopeOf(r); !s.All() {
		sel.Filter.Namespaces = append([]string{}, s.Namespaces()...)
	}
	limit := MaxBulkTaskIDs
	if sel.TaskIDs == nil {
		limit = MaxBulkFilterTasks
	}
	sel.Limit = limit + 1 // one more, to tell "too many" from "exactly the limit"
	ids, err := h.store.SelectTaskIDs(r.Context(), sel)
	if err != nil {
		h.fail(w, r, err)
		return none, false
	}
	if len(ids) > limit {
		detail := fmt.Sprintf("the filter matches more than %d tasks; narrow it (status, created_before, …) and repeat", limit)
		WriteProblem(w, r, ValidationFailed(detail, FieldError{Pointer: "/filter", Detail: detail}))
		return none, false
	}
	// The audit row names the namespace the call could touch: the one its
	// filter names, or the caller's only one; bulkAnswer adds the counts.
	ns := sel.Filter.Namespace
	if s := scopeOf(r); ns == "" && !s.All() && len(s.Namespaces()) == 1 {
		ns = s.Namespaces()[0]
	}
	noteAudit(r, "bulk", ns)
	out := bulkSelected{ids: ids, asked: len(ids)}
	if sel.TaskIDs != nil {
		out.asked = len(sel.TaskIDs)
	}
	return out, true
}

// bulkTaskSelection turns a body into a selection, or lists what is wrong
// with it, all at once.
func bulkTaskSelection(body BulkTaskRequest) (store.TaskSelection, []FieldError) {
	var sel store.TaskSelection
	var problems []FieldError
	switch {
	case body.Filter != nil && body.TaskIDs != nil:
		return sel, []FieldError{{Pointer: "", Detail: "give filter or task_ids, not both"}}
	case body.Filter == nil && body.TaskIDs == nil:
		return sel, []FieldError{{Pointer: "", Detail: "give filter (the filters of GET /tasks) or task_ids"}}
	case body.TaskIDs != nil:
		if len(body.TaskIDs) == 0 {
			return sel, []FieldError{{Pointer: "/task_ids", Detail: "task_ids is empty: name at least one task"}}
		}
		if len(body.TaskIDs) > MaxBulkTaskIDs {
			return sel, []FieldError{{Pointer: "/task_ids", Detail: fmt.Sprintf("at most %d ids per call, got %d", MaxBulkTaskIDs, len(body.TaskIDs))}}
		}
		sel.TaskIDs = make([]uuid.UUID, 0, len(body.TaskIDs))
		for i, raw := range body.TaskIDs {
			id, err := uuid.Parse(raw)
			if err != nil || id == uuid.Nil || len(raw) != 36 {
				problems = append(problems, FieldError{Pointer: "/task_ids/" + strconv.Itoa(i), Detail: fmt.Sprintf("%q is not a task id (a UUID such as 0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b)", raw)})
				continue
			}
			sel.TaskIDs = append(sel.TaskIDs, id)
		}
		// A repeated id counts once.
		slices.SortFunc(sel.TaskIDs, func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) })
		sel.TaskIDs = slices.Compact(sel.TaskIDs)
		return sel, problems
	}
	f := body.Filter
	sel.Filter = store.TaskFilter{Namespace: f.Namespace, Name: f.Name, Version: f.Version, Initiator: f.Initiator,
		SourceSystem: f.SourceSystem, Tags: f.Tag}
	for i, s := range f.Status {
		if !slices.Contains(taskStates, s) {
			problems = append(problems, FieldError{Pointer: "/filter/status/" + strconv.Itoa(i),
				Detail: fmt.Sprintf("%q is not a task state (%s)", s, strings.Join(taskStates, ", "))})
		}
	}
	sel.Filter.Statuses = f.Status
	for i, tag := range f.Tag {
		if tag == "" {
			problems = append(problems, FieldError{Pointer: "/filter/tag/" + strconv.Itoa(i), Detail: "a tag is not empty"})
		}
	}
	if f.CreatedAfter != nil {
		sel.Filter.CreatedAfter = *f.CreatedAfter
	}
	if f.CreatedBefore != nil {
		sel.Filter.CreatedBefore = *f.CreatedBefore
	}
	if f.CreatedAfter != nil && f.CreatedBefore != nil && !f.CreatedAfter.Before(*f.CreatedBefore) {
		problems = append(problems, FieldError{Pointer: "/filter/created_after", Detail: "created_after must be before created_before"})
	}
	if f.Namespace == "" && f.Name == "" && f.Version == "" && len(f.Status) == 0 && f.Initiator == "" &&
		f.SourceSystem == "" && len(f.Tag) == 0 && f.CreatedAfter == nil && f.CreatedBefore == nil {
		// Every task at once is too easy to ask for by accident.
		problems = append(problems, FieldError{Pointer: "/filter", Detail: "the filter is empty: give at least one criterion (namespace, status, created_before, …)"})
	}
	return sel, problems
}

// BulkTimeout bounds one bulk call. Cancelling a task takes a few
// milliseconds (about 3.5 ms on a local database), so the 10,000 tasks a
// filter may match take about half a minute; the server's write timeout
// (TASKER_HTTP_WRITE_TIMEOUT, default 60 s) is extended to match for this
// request alone.
const BulkTimeout = 5 * time.Minute

// bulkContext keeps a bulk action going when its client goes away: once
// it has begun, stopping it between batches would leave a half-done
// action that nobody hears about. BulkTimeout bounds it instead, and the
// answer may be written until just after.
func (h *taskHandlers) bulkContext(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc) {
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(BulkTimeout + 10*time.Second)); err != nil {
		h.logger.LogAttrs(r.Context(), slog.LevelWarn, "bulk task action: the write deadline cannot be extended; a long action may lose its answer",
			slog.String(LogKeyRequestID, RequestIDFromContext(r.Context())), slog.String(LogKeyError, err.Error()))
	}
	return context.WithTimeout(context.WithoutCancel(r.Context()), BulkTimeout)
}

// counts derives the answer's counts from the selection and what the
// engine did with it: tasks deleted before their batch ran count as not
// found, like ids that never matched.
func (s bulkSelected) counts(res engine.BulkResult) (matched, skipped int, byState map[string]int, notFound int) {
	byState = map[string]int{}
	for state, n := range res.Skipped {
		byState[state] = n
		skipped += n
	}
	matched = len(s.ids) - res.Missing
	return matched, skipped, byState, s.asked - matched
}

// bulkAnswer records the outcome in the audit trail and the log, and
// answers with out, or with the error that stopped the action part way.
func (h *taskHandlers) bulkAnswer(w http.ResponseWriter, r *http.Request, verb string, matched, changed, skipped, notFound int, err error, out any) {
	summary := fmt.Sprintf("bulk: %d matched, %d %s, %d skipped, %d not found", matched, changed, verb, skipped, notFound)
	if err != nil {
		summary = fmt.Sprintf("bulk, stopped by an error after %d %s, %d skipped of %d matched", changed, verb, skipped, matched)
	}
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.resourceID = summary
	}
	level := slog.LevelInfo
	attrs := []slog.Attr{
		slog.String(LogKeyRequestID, RequestIDFromContext(r.Context())),
		slog.String(LogKeyPath, r.URL.Path),
		slog.Int("matched", matched), slog.Int(verb, changed), slog.Int("skipped", skipped), slog.Int("not_found", notFound),
	}
	if err != nil {
		level = slog.LevelWarn
		attrs = append(attrs, slog.String(LogKeyError, err.Error()))
	}
	h.logger.LogAttrs(r.Context(), level, "bulk task action", attrs...)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, out)
}
