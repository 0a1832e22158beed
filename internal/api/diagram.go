package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// DiagramResponse is a task's DAG as Mermaid text, steps coloured by state.
type DiagramResponse struct {
	TaskID uuid.UUID `json:"task_id" swaggertype:"string" format:"uuid" example:"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b"`
	Status string    `json:"status" example:"in_progress"`
	// Format is always "mermaid".
	Format string `json:"format" example:"mermaid"`
	// Diagram is a Mermaid flowchart: one node per step labelled with its
	// name and state, one class per state.
	Diagram string `json:"diagram" example:"flowchart TD\n  s1[\"validate<br/>complete\"]:::complete\n  s2[\"charge<br/>in_progress (attempt 2)\"]:::in_progress\n  s1 --> s2\n"`
}

// stateStyles colours each state; states without steps still get a class,
// so the classDef block is the same for every diagram.
var stateStyles = []struct{ state, style string }{
	{"pending", "fill:#f3f4f6,stroke:#9ca3af,color:#111827"},
	{"in_progress", "fill:#dbeafe,stroke:#2563eb,color:#1e3a8a"},
	{"complete", "fill:#dcfce7,stroke:#16a34a,color:#14532d"},
	{"error", "fill:#fee2e2,stroke:#dc2626,color:#7f1d1d"},
	{"cancelled", "fill:#e5e7eb,stroke:#6b7280,color:#374151,stroke-dasharray:4 2"},
	{"resolved_manually", "fill:#fef9c3,stroke:#ca8a04,color:#713f12"},
}

// diagram answers a task's DAG as Mermaid.
//
//	@Summary		Draw a task's steps
//	@Description	The task's DAG as a Mermaid flowchart, each step labelled with its state and coloured by it. format=mermaid answers the bare Mermaid text (text/plain) to paste into a renderer. Permission: tasker.task:show.
//	@Tags			tasks
//	@Produce		json
//	@Produce		plain
//	@Param			task_id	path		string	true	"Task id"	Format(uuid)
//	@Param			format	query		string	false	"json (default) or mermaid"	Enums(json, mermaid)	default(json)
//	@Success		200		{object}	DiagramResponse
//	@Failure		400		{object}	Problem	"Malformed task id or format"
//	@Failure		404		{object}	Problem	"No such task"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.task:show"
//	@Router			/tasks/{task_id}/diagram [get]
func (h *taskHandlers) diagram(w http.ResponseWriter, r *http.Request) {
	id, ok := h.taskID(w, r)
	if !ok {
		return
	}
	q := newQueryParams(r)
	q.Unknown("format")
	format := q.Enum("format", "json", "json", "mermaid")
	if p := q.Problem(); p != nil {
		WriteProblem(w, r, p)
		return
	}
	view, err := h.engine.GetTask(r.Context(), id, false)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	text := mermaidOf(view.Steps)
	if format == "mermaid" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write([]byte(text))
		return
	}
	WriteJSON(w, http.StatusOK, DiagramResponse{TaskID: id, Status: view.Task.Status, Format: "mermaid", Diagram: text})
}

// mermaidOf draws steps as a flowchart. Nodes are numbered (s1, s2, …) in
// creation order rather than named after steps, so no step name can collide
// with a Mermaid keyword; labels are the names, which templates restrict to
// [a-z0-9_].
func mermaidOf(steps []store.Step) string {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	node := make(map[string]string, len(steps))
	for i, s := range steps {
		node[s.Name] = fmt.Sprintf("s%d", i+1)
	}
	for _, s := range steps {
		label := s.Name + "<br/>" + s.Status
		if s.Attempts > 1 || (s.Attempts == 1 && s.Status == "in_progress") {
			label += fmt.Sprintf(" (attempt %d)", s.Attempts)
		}
		fmt.Fprintf(&b, "  %s[\"%s\"]:::%s\n", node[s.Name], strings.ReplaceAll(label, `"`, "#quot;"), s.Status)
	}
	for _, s := range steps {
		for _, p := range s.Parents {
			fmt.Fprintf(&b, "  %s --> %s\n", node[p], node[s.Name])
		}
	}
	for _, st := range stateStyles {
		fmt.Fprintf(&b, "  classDef %s %s\n", st.state, st.style)
	}
	return b.String()
}
