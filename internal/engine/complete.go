package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// complete buffers finished attempts and writes them in batches: one
// transaction per flush, when FlushSize outcomes wait or FlushInterval after
// the first one arrived. Up to Flushers flushes run at once, so one batch is
// written while the previous waits for its commit; the WAL flush per commit,
// not per step, is then the ceiling. Concurrent flushes cannot deadlock each
// other: each locks its steps, then their children, then their tasks, every
// set in id order. It returns once the outcome channel is closed and every
// outcome is written (or given up on after a bounded time).
func (e *Engine) complete() {
	defer close(e.completer)
	var buf []outcome
	var timer <-chan time.Time
	slots := make(chan struct{}, e.cfg.Flushers)
	failed := make(chan []outcome, e.cfg.Flushers)
	finished := make(chan struct{}, e.cfg.Flushers)
	var inflight sync.WaitGroup
	dispatch := func() {
		select {
		case slots <- struct{}{}:
		default:
			// Every flusher is busy: keep buffering (the next batch is
			// bigger, which is what a busy database wants); a finishing
			// flush dispatches it.
			return
		}
		batch := buf
		buf = nil
		timer = nil
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			if left := e.flush(batch); len(left) > 0 {
				failed <- left
			}
			<-slots
			finished <- struct{}{}
		}()
	}
	for {
		select {
		case o, ok := <-e.outcomes:
			if !ok {
				inflight.Wait()
				close(failed)
				for left := range failed {
					buf = append(buf, left...)
				}
				e.flushAll(buf)
				return
			}
			buf = append(buf, o)
			if len(buf) >= e.cfg.FlushSize {
				dispatch()
			} else if timer == nil {
				timer = time.After(e.cfg.FlushInterval)
			}
		case <-finished:
			if len(buf) > 0 && timer == nil {
				dispatch()
			}
		case left := <-failed:
			// The write failed: try again soon, keeping the outcomes.
			buf = append(left, buf...)
			timer = time.After(500 * time.Millisecond)
		case <-timer:
			timer = nil
			if len(buf) > 0 {
				dispatch()
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
	var events []Event
	var held []uuid.UUID
	if e.cfg.Events != nil {
		p.InTx = func(ctx context.Context, tx store.Tx, r *store.FinishResult) error {
			events = finishEvents(r, buf)
			if err := e.cfg.Events.InTx(ctx, tx, events); err != nil {
				return err
			}
			// Held from just before the commit until published (a retried
			// transaction holds anew).
			e.order.release(held)
			held = changedTasks(r)
			e.order.hold(held)
			return nil
		}
		defer func() { e.order.release(held) }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.store.FinishSteps(ctx, p)
	if err != nil {
		e.logger.Warn("writing finished steps failed; will retry", slog.Int("outcomes", len(buf)), slog.String("error", err.Error()))
		return buf
	}
	if e.cfg.Events != nil {
		// Published before waking the claim loop, so that a step's
		// completion precedes its children's claims.
		e.cfg.Events.Committed(ctx, events)
		e.order.release(held)
		held = nil
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
	return nil
}
