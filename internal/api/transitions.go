package api

import (
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// TransitionListResponse is one page of a task's history.
type TransitionListResponse struct {
	TaskID      uuid.UUID            `json:"task_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b"`
	Transitions []TransitionResponse `json:"transitions"`
	Count       int                  `json:"count" example:"20"`
	Limit       int                  `json:"limit" example:"20"`
	HasMore     bool                 `json:"has_more" example:"true"`
	// NextCursor resumes after this page (also in the Link header, rel=next);
	// null on the last page.
	NextCursor *string `json:"next_cursor" extensions:"x-nullable" example:"eyJ2IjoxLCJsIjoidHJhbnNpdGlvbnMiLCJxIjoiYjM4ZjQ1YjUzYWU2ZjU3MiIsImsiOnsidCI6IjIwMjUtMDEtMzFUMDg6MDA6MDAuOTEyMDAxWiIsImsiOjEsImlkIjo0Mn19"`
}

// transitionCursorKey is a transition's position, as a cursor carries it.
type transitionCursorKey struct {
	T    *time.Time `json:"t"`
	Kind int        `json:"k"`
	ID   int64      `json:"id"`
}

func (k transitionCursorKey) valid() error {
	if k.T == nil || k.ID <= 0 || k.Kind < 0 || k.Kind > 2 {
		return errEmptyKey
	}
	return nil
}

// transitions answers a page of a task's history.
//
//	@Summary		List a task's transitions
//	@Description	Every state change of the task and its steps, oldest first (step_id: one step's only), paged by keyset cursor: pass next_cursor, or follow the Link header (rel=next). Permission: tasker.task:show.
//	@Tags			tasks
//	@Produce		json
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Param			step_id	query		string	false	"Only this step's transitions"	Format(uuid)
//	@Param			limit	query		int		false	"Page size; above 100 is served as 100"	default(20)	minimum(1)
//	@Param			cursor	query		string	false	"next_cursor of the previous page"
//	@Success		200		{object}	TransitionListResponse
//	@Header			200		{string}	Link	"<…?cursor=…>; rel=\"next\" when another page follows"
//	@Failure		400		{object}	Problem	"Malformed id, limit or cursor"
//	@Failure		404		{object}	Problem	"No such task"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:show"
//	@Router			/tasks/{task_id}/transitions [get]
func (h *taskHandlers) transitions(w http.ResponseWriter, r *http.Request) {
	id, ok := h.taskID(w, r)
	if !ok {
		return
	}
	q := newQueryParams(r)
	q.Unknown("step_id", "limit", "cursor")
	var stepID *uuid.UUID
	if raw := q.String("step_id"); raw != "" {
		if sid, err := uuid.Parse(raw); err != nil || len(raw) != 36 {
			q.fail("step_id", "%q is not a UUID", raw)
		} else {
			stepID = &sid
		}
	}
	limit := q.Limit()
	rawCursor := q.String("cursor")
	if p := q.Problem(); p != nil {
		WriteProblem(w, r, p)
		return
	}
	step := ""
	if stepID != nil {
		step = stepID.String()
	}
	fp := queryFingerprint("transitions", id.String(), step)
	params := store.TransitionPageParams{TaskID: id, StepID: stepID, Limit: limit + 1}
	if rawCursor != "" {
		var k transitionCursorKey
		if p := decodeCursor(rawCursor, "transitions", fp, &k); p != nil {
			WriteProblem(w, r, p)
			return
		}
		params.After = &store.TransitionKey{CreatedAt: *k.T, Kind: k.Kind, ID: k.ID}
	}
	entries, err := h.store.TransitionsPage(r.Context(), params)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := TransitionListResponse{TaskID: id, Transitions: make([]TransitionResponse, 0, min(len(entries), limit)), Limit: limit}
	if len(entries) > limit {
		entries, out.HasMore = entries[:limit], true
	}
	for _, e := range entries {
		out.Transitions = append(out.Transitions, transitionJSON(e.Transition, e.StepName))
	}
	out.Count = len(out.Transitions)
	if out.HasMore {
		last := entries[len(entries)-1].Key
		next := encodeCursor("transitions", fp, transitionCursorKey{T: &last.CreatedAt, Kind: last.Kind, ID: last.ID})
		out.NextCursor = &next
		setNextLink(w, r, next)
	}
	WriteJSON(w, http.StatusOK, out)
}
