package workers

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// scrubber returns the scrubber of the sensitive context values of rs's
// task, for what a worker reports (its failure, its custom events) before
// it reaches logs, events, webhooks and traces, as the engine does for its
// own handlers. The task is read only when its template marks properties
// "x-sensitive".
func (s *Service) scrubber(ctx context.Context, rs *store.RemoteStep) (registry.Scrubber, error) {
	reg, err := s.cfg.Templates.ByID(ctx, rs.NamedTaskID)
	if err != nil {
		return registry.Scrubber{}, err
	}
	if !reg.HasSensitiveContext() {
		return registry.Scrubber{}, nil
	}
	t, err := s.store.GetTask(ctx, rs.TaskID)
	if err != nil {
		return registry.Scrubber{}, fmt.Errorf("workers: read the task's context to redact it: %w", err)
	}
	return reg.ContextScrubber(t.Context), nil
}

// scrubCustom returns custom with its payloads scrubbed.
func scrubCustom(sc registry.Scrubber, custom map[uuid.UUID][]handler.CustomEvent) map[uuid.UUID][]handler.CustomEvent {
	if sc.Empty() || len(custom) == 0 {
		return custom
	}
	out := make(map[uuid.UUID][]handler.CustomEvent, len(custom))
	for id, evs := range custom {
		scrubbed := make([]handler.CustomEvent, len(evs))
		for i, ev := range evs {
			ev.Payload = sc.JSON(ev.Payload)
			scrubbed[i] = ev
		}
		out[id] = scrubbed
	}
	return out
}
