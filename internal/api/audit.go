package api

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/store"
)

// auditHandlers serve the audit trail.
type auditHandlers struct {
	store  *store.Store
	logger *slog.Logger
}

// AuditListResponse is one page of the audit trail, newest first.
type AuditListResponse struct {
	Events []store.AuditEvent `json:"events"`
	Count  int                `json:"count" example:"20"`
	Limit  int                `json:"limit" example:"20"`
	// HasMore says whether another page follows.
	HasMore bool `json:"has_more"`
	// NextCursor resumes after this page (also in the Link header, rel=next).
	NextCursor *string `json:"next_cursor" extensions:"x-nullable"`
}

// auditCursorKey is an event's position, as a cursor carries it.
type auditCursorKey struct {
	T  time.Time `json:"t"`
	ID int64     `json:"id"`
}

// list answers GET /audit.
//
//	@Summary		List the audit trail
//	@Description	Who did what to which object, newest first: every mutating request (task creation, manual transitions of tasks and steps, template registration, replacement and retirement, webhook changes) and every refused attempt by an authenticated caller. actor is the token's sub. A caller whose tasker.audit:index is scoped to namespaces sees only their events. Permission: tasker.audit:index.
//	@Tags			audit
//	@Produce		json
//	@Param			actor		query		string	false	"Only this actor (a token's sub)"	example(alice@example.com)
//	@Param			resource	query		string	false	"Only this resource"	Enums(task, workflow_step, handler, template, health_status, metrics, analytics, webhook, worker, audit, event)
//	@Param			since		query		string	false	"Only events at or after (RFC 3339)"	Format(date-time)
//	@Param			limit		query		int		false	"Page size; above 100 is served as 100"	default(20)	minimum(1)
//	@Param			cursor		query		string	false	"next_cursor of the previous page"
//	@Success		200			{object}	AuditListResponse
//	@Failure		400			{object}	Problem	"Bad filter, limit or cursor"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.audit:index"
//	@Router			/audit [get]
func (h *auditHandlers) list(w http.ResponseWriter, r *http.Request) {
	q := newQueryParams(r)
	q.Unknown("actor", "resource", "since", "limit", "cursor")
	f := store.AuditFilter{
		Actor:    q.String("actor"),
		Resource: strings.TrimPrefix(q.String("resource"), "tasker."),
		Since:    q.Time("since"),
	}
	if f.Resource != "" && !slices.Contains(auth.Resources, f.Resource) {
		q.fail("resource", "%q is not a resource (%s)", f.Resource, strings.Join(auth.Resources, ", "))
	}
	limit := q.Limit()
	rawCursor := q.String("cursor")
	if p := q.Problem(); p != nil {
		WriteProblem(w, r, p)
		return
	}
	if s := scopeOf(r); !s.All() {
		f.Namespaces = append([]string{}, s.Namespaces()...)
	}
	fp := queryFingerprint("audit", f.Actor, f.Resource, f.Since.UTC().Format(time.RFC3339Nano))
	var after *store.AuditKey
	if rawCursor != "" {
		var k auditCursorKey
		if p := decodeCursor(rawCursor, "audit", fp, &k); p != nil {
			WriteProblem(w, r, p)
			return
		}
		if k.ID == 0 {
			WriteProblem(w, r, badCursorKey(errEmptyKey))
			return
		}
		after = &store.AuditKey{OccurredAt: k.T, ID: k.ID}
	}
	events, err := h.store.ListAudit(r.Context(), f, after, limit+1)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	out := AuditListResponse{Events: events, Limit: limit}
	if len(events) > limit {
		out.Events, out.HasMore = events[:limit], true
	}
	if out.Events == nil {
		out.Events = []store.AuditEvent{}
	}
	out.Count = len(out.Events)
	if out.HasMore {
		last := out.Events[len(out.Events)-1]
		next := encodeCursor("audit", fp, auditCursorKey{T: last.OccurredAt, ID: last.ID})
		out.NextCursor = &next
		setNextLink(w, r, next)
	}
	WriteJSON(w, http.StatusOK, out)
}
