package engine

import (
	"context"
	"errors"
	"log/slog"
)

// PauseResult says what a pause or resume changed.
type PauseResult struct {
	// Paused is the state after the call.
	Paused bool
	// Steps counts the runnable steps parked (pause) or made runnable
	// again (resume).
	Steps int
}

// Pause stops claims of the steps of a namespace (name "") or of every
// version of the template name, on every replica and for remote workers:
// its runnable steps are parked, new tasks are accepted and wait, running
// steps finish. The pause is a row in the database, so it outlives restarts.
func (e *Engine) Pause(ctx context.Context, namespace, name, actor string) (PauseResult, error) {
	if namespace == "" {
		return PauseResult{}, errors.New("engine: pause needs a namespace")
	}
	n, err := e.store.PauseHandlers(ctx, namespace, name, actor)
	if err != nil {
		return PauseResult{}, err
	}
	e.logger.InfoContext(ctx, "paused", slog.String("namespace", namespace), slog.String("name", name),
		slog.Int("parked_steps", n), slog.String("actor", actor))
	return PauseResult{Paused: true, Steps: n}, nil
}

// Resume lifts a pause set by Pause: the parked steps become runnable in
// the order they became ready, and every replica is woken. Resuming what is
// not paused changes nothing.
func (e *Engine) Resume(ctx context.Context, namespace, name, actor string) (PauseResult, error) {
	if namespace == "" {
		return PauseResult{}, errors.New("engine: resume needs a namespace")
	}
	_, n, err := e.store.ResumeHandlers(ctx, namespace, name, e.channel)
	if err != nil {
		return PauseResult{}, err
	}
	if n > 0 {
		e.poke()
	}
	e.logger.InfoContext(ctx, "resumed", slog.String("namespace", namespace), slog.String("name", name),
		slog.Int("unparked_steps", n), slog.String("actor", actor))
	return PauseResult{Paused: false, Steps: n}, nil
}
