package engine

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// renewLoop extends the leases of running steps; a step whose lease could
// not be renewed was lost (cancelled, or taken by another replica after
// expiry) and its handler is cancelled.
func (e *Engine) renewLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.LeaseRenewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		refs := e.runningRefs()
		if len(refs) == 0 {
			continue
		}
		held, err := e.store.RenewLeases(ctx, e.cfg.ReplicaID, refs, e.cfg.LeaseDuration)
		if err != nil {
			e.logger.Warn("lease renewal failed", slog.String("error", err.Error()))
			continue
		}
		for _, r := range refs {
			if !held[r.StepID] {
				e.cancelStep(r.StepID, errLeaseLost)
			}
		}
	}
}

func (e *Engine) cancelStep(id uuid.UUID, cause error) {
	e.mu.Lock()
	r := e.running[id]
	e.mu.Unlock()
	if r != nil {
		r.cancel(cause)
	}
}

// rescueLoop takes back steps whose lease expired, so a dead replica's work
// resumes within about one lease plus this interval.
func (e *Engine) rescueLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.RescueInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			var inTx func(context.Context, store.Tx, *store.RescueResult) error
			var held []uuid.UUID
			if e.cfg.Events != nil {
				inTx = func(ctx context.Context, tx store.Tx, r *store.RescueResult) error {
					if err := e.cfg.Events.InTx(ctx, tx, rescueEvents(r)); err != nil {
						return err
					}
					e.order.release(held)
					held = changedTasks(&store.FinishResult{Completed: r.Requeued, Failed: r.Failed})
					e.order.hold(held)
					return nil
				}
			}
			res, err := e.store.RescueExpiredInTx(ctx, e.cfg.ReplicaID, 500, e.channel, inTx)
			if err != nil {
				e.order.release(held)
				if ctx.Err() == nil {
					e.logger.Warn("rescuing expired leases failed", slog.String("error", err.Error()))
				}
				break
			}
			if n := len(res.Requeued) + len(res.Failed); n > 0 {
				e.logger.Info("took back steps with expired leases", slog.Int("requeued", len(res.Requeued)), slog.Int("failed", len(res.Failed)))
				if e.cfg.Events != nil {
					e.cfg.Events.Committed(ctx, rescueEvents(res))
				}
				e.poke()
			}
			e.order.release(held)
			if len(res.Requeued)+len(res.Failed) < 500 {
				break
			}
		}
	}
}

// cancelLoop cancels the handlers of tasks cancelled on any replica.
func (e *Engine) cancelLoop(ctx context.Context, cancels <-chan string) {
	if cancels == nil {
		<-ctx.Done()
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case payload := <-cancels:
			if stepID, ok := strings.CutPrefix(payload, "step:"); ok {
				if id, err := uuid.Parse(stepID); err == nil {
					e.cancelStep(id, errTaskCancelled)
				}
				continue
			}
			if id, err := uuid.Parse(payload); err == nil {
				e.cancelTaskLocally(id)
			}
		}
	}
}

func (e *Engine) cancelTaskLocally(taskID uuid.UUID) {
	e.mu.Lock()
	var runs []*run
	for _, r := range e.running {
		if r.ref.TaskID == taskID {
			runs = append(runs, r)
		}
	}
	e.mu.Unlock()
	for _, r := range runs {
		r.cancel(errTaskCancelled)
	}
}
