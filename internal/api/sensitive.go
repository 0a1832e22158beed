package api

import (
	"net/http"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/registry"
)

// Redacted replaces a sensitive value for a caller without
// tasker.task:show_sensitive.
const Redacted = registry.Redacted

// redactContext hides the task context's values that the template's schema
// marks "x-sensitive": true, unless the caller holds
// tasker.task:show_sensitive in the task's namespace. The engine redacts
// the same values from logs, events, webhooks and traces, with the same
// schema walk (registry.Registered.RedactContext).
func (h *taskHandlers) redactContext(r *http.Request, view *engine.TaskView, out *TaskResponse) error {
	if h.registry == nil || len(out.Context) == 0 || can(r, auth.TaskShowSensitive, view.Task.Namespace) {
		return nil
	}
	reg, err := h.registry.ByID(r.Context(), view.Task.NamedTaskID)
	if err != nil {
		return err
	}
	out.Context, _ = reg.RedactContext(out.Context)
	return nil
}
