package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/taskerd/taskerd/internal/store"
)

// complete buffers finished attempts and writes them in batches: one
// transaction per flush, when FlushSize outcomes wait or FlushInterval after
// the first one arrived. The WAL flush per commit, not per step, is then
// the ceiling. It returns once the outcome channel is closed and drained.
func (e *Engine) complete() {
	defer close(e.completer)
	var buf []outcome
	var timer <-chan time.Time
	for {
		select {
		case o, ok := <-e.outcomes:
			if !ok {
				e.flushAll(buf)
				return
			}
			buf = append(buf, o)
			if len(buf) >= e.cfg.FlushSize {
				buf = e.flush(buf)
				timer = nil
			} else if timer == nil {
				timer = time.After(e.cfg.FlushInterval)
			}
		case <-timer:
			buf = e.flush(buf)
			timer = nil
			if len(buf) > 0 {
				// The write failed: try again soon, keeping the outcomes.
				timer = time.After(500 * time.Millisecond)
			}
		}
	}
}

// flushAll writes what is left at stop, retrying for a bounded time.
func (e *Engine) flushAll(buf []outcome) {
	deadline := time.Now().Add(30 * time.Second)
	for len(buf) > 0 && time.Now().Before(deadline) {
		if buf = e.flush(buf); len(buf) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(buf) > 0 {
		e.logger.Error("outcomes not written before stop; their leases will expire and the steps run again",
			slog.Int("outcomes", len(buf)))
	}
}

// flush writes buf and returns what is left (everything on failure).
func (e *Engine) flush(buf []outcome) []outcome {
	if len(buf) == 0 {
		return nil
	}
	p := store.FinishParams{Owner: e.cfg.ReplicaID, Channel: e.channel, Stagger: e.cfg.Stagger}
	for _, o := range buf {
		if o.failed {
			p.Failures = append(p.Failures, store.Failure{StepID: o.ref.StepID, Attempt: o.ref.Attempt, Error: o.err, Retryable: o.retryable, Delay: o.delay})
		} else {
			p.Completions = append(p.Completions, store.Completion{StepID: o.ref.StepID, Attempt: o.ref.Attempt, Results: o.results})
		}
	}
	if e.cfg.Events != nil {
		p.InTx = func(ctx context.Context, tx store.Tx, r *store.FinishResult) error {
			return e.cfg.Events.InTx(ctx, tx, finishEvents(r))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.store.FinishSteps(ctx, p)
	if err != nil {
		e.logger.Warn("writing finished steps failed; will retry", slog.Int("outcomes", len(buf)), slog.String("error", err.Error()))
		return buf
	}
	if res.BecameRunnable > 0 {
		e.poke()
	}
	for _, r := range res.Retried {
		e.noteRetry(r.RetryAt)
	}
	if len(res.Retried) > 0 {
		e.poke() // re-plan the idle timer around the new retry time
	}
	if e.cfg.Events != nil {
		e.cfg.Events.Committed(ctx, finishEvents(res))
	}
	return nil
}
