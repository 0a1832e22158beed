package engine

import (
	"context"
	"slices"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// BulkBatchSize is how many tasks one transaction of a bulk action changes
// at most: small enough that no batch holds its locks for long while the
// engine runs, large enough that 10,000 tasks take a hundred round trips.
const BulkBatchSize = 100

// BulkResult counts what a bulk action did with the tasks it was given.
// Each task is counted once: Changed, in Skipped, or Missing.
type BulkResult struct {
	// Changed is how many tasks the action was applied to.
	Changed int
	// Skipped counts the tasks whose state the action does not apply to,
	// by that state.
	Skipped map[string]int
	// Missing is how many tasks no longer existed when their batch ran.
	Missing int
}

// CancelTasks cancels tasks in batches of BulkBatchSize, each batch in its
// own transaction, every task as CancelTask would (transitions with the
// actor, events, stopped handlers). Only tasks in a state of
// store.BulkCancellable are cancelled; the others are skipped. On an error
// the batches before it stay done and the result counts them.
func (e *Engine) CancelTasks(ctx context.Context, ids []uuid.UUID, actor string) (BulkResult, error) {
	return e.actBulk(ctx, ids, actor, e.store.CancelTasks)
}

// RetryTasks retries the failed tasks among ids in batches, as RetryTask
// would; tasks in any other state are skipped. Errors are as in CancelTasks.
func (e *Engine) RetryTasks(ctx context.Context, ids []uuid.UUID, actor string) (BulkResult, error) {
	return e.actBulk(ctx, ids, actor, e.store.RetryTasks)
}

func (e *Engine) actBulk(ctx context.Context, ids []uuid.UUID, actor string,
	fn func(context.Context, store.BulkAction) (store.BulkOutcome, error)) (BulkResult, error) {
	// In id order, batch after batch, as the store locks within a batch.
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) })
	ids = slices.Compact(ids)
	res := BulkResult{Skipped: map[string]int{}}
	for batch := range slices.Chunk(ids, BulkBatchSize) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		out, err := e.actBatch(ctx, batch, actor, fn)
		if err != nil {
			return res, err
		}
		res.Changed += len(out.Changed)
		res.Missing += out.Missing
		for state, n := range out.Skipped {
			res.Skipped[state] += n
		}
	}
	return res, nil
}

// actBatch is act (tasks.go) for a batch of tasks in one transaction.
func (e *Engine) actBatch(ctx context.Context, batch []uuid.UUID, actor string,
	fn func(context.Context, store.BulkAction) (store.BulkOutcome, error)) (store.BulkOutcome, error) {
	b := store.BulkAction{TaskIDs: batch, Actor: actor, StepsChannel: e.channel, CancelChannel: e.cancelChannel,
		Stagger: e.cfg.Stagger}
	held := batch
	if e.cfg.Events != nil {
		b.InTx = func(ctx context.Context, tx store.Tx, changes []store.Change) error {
			return e.cfg.Events.InTx(ctx, tx, changeEvents(changes))
		}
		// The claims the actions make possible are published after them.
		e.order.hold(held)
		defer func() { e.order.release(held) }()
	}
	out, err := fn(ctx, b)
	if err != nil {
		return out, err
	}
	// Handlers of this replica stop at once; other replicas hear the NOTIFY.
	for _, c := range out.Changes {
		if c.To == "cancelled" && c.StepID != uuid.Nil {
			e.cancelStep(c.StepID, errTaskCancelled)
		}
	}
	if e.cfg.Events != nil {
		e.cfg.Events.Committed(ctx, changeEvents(out.Changes))
		e.order.release(held)
		held = nil
	}
	if len(out.Changed) > 0 {
		e.poke()
	}
	return out, nil
}
