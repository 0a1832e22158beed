package engine

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/store"
)

// Remote workers claim and finish steps through the worker API, not through
// the claim loop; these do it with the same transitions and events as the
// engine's own steps, so the event stream sees every step.

// ClaimRemote claims up to p.Limit steps of the remote queue p.Queue for the
// worker p.Owner, publishing the claim's events.
func (e *Engine) ClaimRemote(ctx context.Context, p store.ClaimParams) ([]store.ClaimedStep, error) {
	if p.Queue == "" {
		return nil, errors.New("engine: remote claims need a remote queue")
	}
	var events []Event
	if e.wantsTx(claimEventNames...) {
		p.InTx = func(ctx context.Context, tx store.Tx, steps []store.ClaimedStep) error {
			events = claimEvents(steps)
			return e.cfg.Events.InTx(ctx, tx, events)
		}
	}
	steps, err := e.store.ClaimSteps(ctx, p)
	if err != nil {
		return nil, err
	}
	if e.cfg.Events != nil && len(steps) > 0 {
		if events == nil {
			events = claimEvents(steps)
			e.catchUp(ctx, events, claimEventNames)
		}
		e.cfg.Events.Committed(ctx, events)
	}
	return steps, nil
}

// FinishRemote records remote workers' outcomes (fenced by attempt, as the
// engine's own), publishing their events; steps that became runnable wake
// this replica's claim loop, other replicas and waiting workers hear the
// flush's notification. custom holds, by step id, the business events the
// workers reported (already checked against the templates' custom_events);
// they are published, and written to the outbox, only for attempts the
// flush recorded, before the transitions, as the engine's own handlers'.
func (e *Engine) FinishRemote(ctx context.Context, p store.FinishParams, custom map[uuid.UUID][]handler.CustomEvent) (*store.FinishResult, error) {
	p.Channel, p.Stagger = e.channel, e.cfg.Stagger
	var events []Event
	if e.cfg.Events != nil {
		p.InTx = func(ctx context.Context, tx store.Tx, r *store.FinishResult) error {
			events = append(remoteCustomEvents(r, custom), finishEvents(r, nil)...)
			return e.cfg.Events.InTx(ctx, tx, events)
		}
	}
	res, err := e.store.FinishSteps(ctx, p)
	if err != nil {
		return nil, err
	}
	if e.cfg.Events != nil && !res.Empty() {
		e.cfg.Events.Committed(ctx, events)
	}
	if res.BecameRunnable > 0 {
		e.poke()
	}
	return res, nil
}

// remoteCustomEvents lists the custom events of the attempts r recorded; a
// stale attempt's events are dropped with it. The bus fills in the names
// of their task and step.
func remoteCustomEvents(r *store.FinishResult, custom map[uuid.UUID][]handler.CustomEvent) []Event {
	if len(custom) == 0 {
		return nil
	}
	var out []Event
	add := func(ref store.StepRef) {
		for _, c := range custom[ref.StepID] {
			out = append(out, Event{Name: c.Name, TaskID: ref.TaskID, StepID: ref.StepID, Attempt: ref.Attempt,
				Time: time.Now(), Custom: true, Payload: c.Payload})
		}
	}
	for _, ref := range r.Completed {
		add(ref)
	}
	for _, ref := range r.Retried {
		add(ref.StepRef)
	}
	for _, ref := range r.Failed {
		add(ref)
	}
	return out
}
