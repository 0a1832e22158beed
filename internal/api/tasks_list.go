package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// TaskListResponse is one page of tasks.
type TaskListResponse struct {
	Tasks []TaskSummary `json:"tasks"`
	// Count is the number of tasks on this page.
	Count  int `json:"count" example:"20"`
	Limit  int `json:"limit" example:"20"`
	Offset int `json:"offset" example:"0"`
	// HasMore says whether another page follows.
	HasMore bool `json:"has_more" example:"true"`
	// NextCursor resumes after this page (also in the Link header, rel=next);
	// null on the last page.
	NextCursor *string `json:"next_cursor" extensions:"x-nullable" example:"eyJ2IjoxLCJsIjoidGFza3MiLCJxIjoiNGY1M2NkYTE4YzJmZjEwZSIsImsiOnsiaWQiOiIwMTkwZjhjNC01YThiLTdjM2UtOWIxYS0yZjRlNmQ4YzBhMWIiLCJ0IjoiMjAyNS0wMS0zMVQwODowMDowMC4wMDAxMjNaIn19"`
}

// taskCursorKey is a task's position in the list, as a cursor carries it:
// T for created_at and completed_at (absent: not finished), S for status.
type taskCursorKey struct {
	ID uuid.UUID  `json:"id"`
	T  *time.Time `json:"t,omitempty"`
	S  string     `json:"s,omitempty"`
}

// storeKey checks the key against the sort it was made for.
func (k taskCursorKey) storeKey(sort store.TaskSort) (*store.TaskKey, error) {
	if k.ID == uuid.Nil {
		return nil, errEmptyKey
	}
	out := &store.TaskKey{TaskID: k.ID, Status: k.S}
	switch sort {
	case store.SortStatus:
		if !slices.Contains(taskStates, k.S) {
			return nil, fmt.Errorf("status %q is not a task state", k.S)
		}
	case store.SortCompletedAt:
		out.CompletedAt = k.T
	default:
		if k.T == nil {
			return nil, errEmptyKey
		}
		out.CreatedAt = *k.T
	}
	return out, nil
}

func cursorKeyOf(t *store.Task, sort store.TaskSort) taskCursorKey {
	k := store.KeyOf(t, sort)
	out := taskCursorKey{ID: k.TaskID, S: k.Status}
	switch sort {
	case store.SortCompletedAt:
		out.T = k.CompletedAt
	case store.SortStatus:
	default:
		out.T = &k.CreatedAt
	}
	return out
}

// list answers GET /tasks: filtered, sorted, paged by offset or cursor.
//
//	@Summary		List tasks
//	@Description	Tasks matching every filter given, newest first by default, without their context. Page with Tasker's limit and offset, or, for deep pages and lists that grow while you read them, with the keyset cursor: pass next_cursor (or follow the Link header, rel=next) with the same filters and sort. A cursor page never repeats or skips a task whose sort key does not change (created_at never does). limit defaults to 20; above 100 it is served as 100. Permission: tasker.task:index; a caller scoped to namespaces lists only theirs.
//	@Tags			tasks
//	@Produce		json
//	@Param			namespace		query		string		false	"Template namespace"				example(shop)
//	@Param			name			query		string		false	"Template name"						example(checkout)
//	@Param			version			query		string		false	"Template version"					example(1.0.0)
//	@Param			status			query		[]string	false	"Any of these states"				collectionFormat(csv)	Enums(pending, in_progress, complete, error, cancelled, resolved_manually)
//	@Param			initiator		query		string		false	"Initiator"							example(web)
//	@Param			source_system	query		string		false	"Source system"						example(storefront)
//	@Param			tag				query		[]string	false	"Tasks carrying all these tags"		collectionFormat(csv)
//	@Param			created_after	query		string		false	"Created strictly after (RFC 3339)"	Format(date-time)
//	@Param			created_before	query		string		false	"Created strictly before (RFC 3339)"	Format(date-time)
//	@Param			sort_by			query		string		false	"Sort key (ties: task id)"			Enums(created_at, completed_at, status)	default(created_at)
//	@Param			sort_order		query		string		false	"Direction; unfinished tasks come last when sorting by completed_at"	Enums(asc, desc)	default(desc)
//	@Param			limit			query		int			false	"Page size; above 100 is served as 100"	default(20)	minimum(1)
//	@Param			offset			query		int			false	"Rows to skip (not with cursor)"	default(0)	minimum(0)	maximum(1000000)
//	@Param			cursor			query		string		false	"next_cursor of the previous page"
//	@Success		200				{object}	TaskListResponse
//	@Header			200				{string}	Link	"<…?cursor=…>; rel=\"next\" when another page follows"
//	@Failure		400				{object}	Problem	"Bad filter, sort, limit, offset or cursor"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:index"
//	@Router			/tasks [get]
func (h *taskHandlers) list(w http.ResponseWriter, r *http.Request) {
	q := newQueryParams(r)
	q.Unknown("namespace", "name", "version", "status", "initiator", "source_system", "tag",
		"created_after", "created_before", "sort_by", "sort_order", "limit", "offset", "cursor")
	f := store.TaskFilter{
		Namespace:     q.String("namespace"),
		Name:          q.String("name"),
		Version:       q.String("version"),
		Statuses:      q.EnumList("status", taskStates...),
		Initiator:     q.String("initiator"),
		SourceSystem:  q.String("source_system"),
		Tags:          q.List("tag"),
		CreatedAfter:  q.Time("created_after"),
		CreatedBefore: q.Time("created_before"),
	}
	sort := store.TaskSort(q.Enum("sort_by", string(store.SortCreatedAt),
		string(store.SortCreatedAt), string(store.SortCompletedAt), string(store.SortStatus)))
	order := q.Enum("sort_order", "desc", "asc", "desc")
	limit := q.Limit()
	offset := q.Int("offset", 0, 0, 1_000_000)
	rawCursor := q.String("cursor")
	if rawCursor != "" && offset != 0 {
		q.fail("offset", "cannot be combined with cursor: a cursor already says where the page starts")
	}
	if !f.CreatedAfter.IsZero() && !f.CreatedBefore.IsZero() && !f.CreatedAfter.Before(f.CreatedBefore) {
		q.fail("created_after", "must be before created_before")
	}
	if p := q.Problem(); p != nil {
		WriteProblem(w, r, p)
		return
	}
	fp := queryFingerprint("tasks", f.Namespace, f.Name, f.Version, quoteList(f.Statuses), f.Initiator, f.SourceSystem,
		quoteList(f.Tags), f.CreatedAfter.UTC().Format(time.RFC3339Nano), f.CreatedBefore.UTC().Format(time.RFC3339Nano),
		string(sort), order)
	// A caller scoped to some namespaces lists only theirs; the filter is
	// part of the query, so pages stay full. The cursor's fingerprint
	// leaves it out: the scope is the caller's, not the query's.
	if s := scopeOf(r); !s.All() {
		f.Namespaces = append([]string{}, s.Namespaces()...)
	}
	params := store.TaskListParams{Filter: f, Sort: sort, Desc: order == "desc", Offset: offset, Limit: limit + 1}
	if rawCursor != "" {
		var k taskCursorKey
		if p := decodeCursor(rawCursor, "tasks", fp, &k); p != nil {
			WriteProblem(w, r, p)
			return
		}
		after, err := k.storeKey(sort)
		if err != nil {
			WriteProblem(w, r, badCursorKey(err))
			return
		}
		params.After = after
	}
	tasks, err := h.store.ListTasks(r.Context(), params)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := TaskListResponse{Tasks: make([]TaskSummary, 0, min(len(tasks), limit)), Limit: limit, Offset: offset}
	if len(tasks) > limit {
		tasks, out.HasMore = tasks[:limit], true
	}
	for i := range tasks {
		out.Tasks = append(out.Tasks, summaryJSON(&tasks[i]))
	}
	out.Count = len(out.Tasks)
	if out.HasMore {
		next := encodeCursor("tasks", fp, cursorKeyOf(&tasks[len(tasks)-1], sort))
		out.NextCursor = &next
		setNextLink(w, r, next)
	}
	WriteJSON(w, http.StatusOK, out)
}

func badCursorKey(err error) *Problem {
	why := "its position is not valid: " + err.Error()
	if errors.Is(err, errEmptyKey) {
		why = "its position is incomplete; pass next_cursor from the previous page unchanged"
	}
	return BadRequest("invalid query parameter cursor: "+why, FieldError{Parameter: "cursor", Detail: why})
}
