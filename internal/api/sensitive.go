package api

import (
	"encoding/json"
	"net/http"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/engine"
)

// Redacted replaces a sensitive value for a caller without
// tasker.task:show_sensitive.
const Redacted = "[REDACTED]"

// redactContext hides the task context's values that the template's schema
// marks "x-sensitive": true, unless the caller holds
// tasker.task:show_sensitive in the task's namespace.
func (h *taskHandlers) redactContext(r *http.Request, view *engine.TaskView, out *TaskResponse) error {
	if h.registry == nil || len(out.Context) == 0 || can(r, auth.TaskShowSensitive, view.Task.Namespace) {
		return nil
	}
	reg, err := h.registry.ByID(r.Context(), view.Task.NamedTaskID)
	if err != nil {
		return err
	}
	if len(reg.Template.Schema) == 0 {
		return nil
	}
	var schema, doc any
	if json.Unmarshal(reg.Template.Schema, &schema) != nil || json.Unmarshal(out.Context, &doc) != nil {
		return nil
	}
	if !redact(schema, &doc) {
		return nil
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	out.Context = raw
	return nil
}

// redact walks doc along schema's properties and items and replaces every
// value whose subschema says "x-sensitive": true; it reports a change.
func redact(schema any, doc *any) bool {
	s, ok := schema.(map[string]any)
	if !ok || *doc == nil {
		return false
	}
	if s["x-sensitive"] == true {
		*doc = Redacted
		return true
	}
	changed := false
	switch d := (*doc).(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for name, sub := range props {
			v, ok := d[name]
			if !ok {
				continue
			}
			if redact(sub, &v) {
				d[name], changed = v, true
			}
		}
	case []any:
		for i := range d {
			if redact(s["items"], &d[i]) {
				changed = true
			}
		}
	}
	return changed
}
