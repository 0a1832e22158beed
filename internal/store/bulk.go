package store

import (
	"context"
	_ "embed"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TaskSelection picks the tasks of a bulk action: those matching Filter,
// or, when TaskIDs is not nil, those of TaskIDs (the other fields of
// Filter are then ignored). Filter.Namespaces scopes both forms.
type TaskSelection struct {
	Filter  TaskFilter
	TaskIDs []uuid.UUID
	// Limit bounds the answer; required.
	Limit int
}

//go:embed sql/tasks_select_ids.sql
var tasksSelectIDsSQL string

// SelectTaskIDs returns the ids of the tasks sel picks, in id order, at
// most sel.Limit of them.
func (s *Store) SelectTaskIDs(ctx context.Context, sel TaskSelection) ([]uuid.UUID, error) {
	if sel.Limit <= 0 {
		return nil, errors.New("select tasks: Limit is required")
	}
	f := sel.Filter
	var ids []uuid.UUID
	if sel.TaskIDs != nil {
		// The ids alone pick the tasks; an empty list picks none.
		f = TaskFilter{Namespaces: f.Namespaces}
		ids = append([]uuid.UUID{}, sel.TaskIDs...)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, tasksSelectIDsSQL,
		nullable(f.Namespace), nullable(f.Name), nullable(f.Version), nullableSlice(f.Statuses),
		nullable(f.Initiator), nullable(f.SourceSystem), nullableSlice(f.Tags),
		nullableTime(f.CreatedAfter), nullableTime(f.CreatedBefore), ids, scopeArg(f.Namespaces), sel.Limit)
	if err != nil {
		return nil, translate("select tasks", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, translate("select tasks", err)
	}
	return out, nil
}

// BulkAction is one batch of a bulk manual action: the same action, with
// the same actor, on each of TaskIDs, in one transaction.
type BulkAction struct {
	TaskIDs []uuid.UUID
	// Actor, StepsChannel, CancelChannel and Stagger are as in Action.
	Actor         string
	StepsChannel  string
	CancelChannel string
	Stagger       time.Duration
	// InTx runs inside the transaction with all the batch's changes; an
	// error rolls the batch back.
	InTx func(ctx context.Context, tx Tx, changes []Change) error
}

// BulkOutcome is what one batch of a bulk action did. Each task of the
// batch is in exactly one of Changed, Skipped and Missing.
type BulkOutcome struct {
	// Changed are the tasks the action was applied to.
	Changed []uuid.UUID
	// Skipped counts the tasks whose state the action does not apply to,
	// by that state.
	Skipped map[string]int
	// Missing counts the tasks that no longer exist (deleted since they
	// were selected).
	Missing int
	// Changes are the transitions made, for the engine's events.
	Changes []Change
}

// BulkCancellable are the states bulk cancel applies to: unfinished work
// and failed tasks. A finished task (complete, resolved_manually) can be
// cancelled one at a time as an admin override, never by a filter that
// happens to match it.
var BulkCancellable = []string{"pending", "in_progress", "error"}

// CancelTasks cancels each task of the batch whose state is one of
// BulkCancellable, exactly as CancelTask does, and skips the others.
func (s *Store) CancelTasks(ctx context.Context, b BulkAction) (BulkOutcome, error) {
	return s.bulkAction(ctx, "cancel tasks", b, BulkCancellable, cancelLockedTask)
}

// RetryTasks retries each failed task of the batch exactly as RetryTask
// does, and skips the tasks in any other state.
func (s *Store) RetryTasks(ctx context.Context, b BulkAction) (BulkOutcome, error) {
	return s.bulkAction(ctx, "retry tasks", b, []string{"error"}, retryLockedTask)
}

// bulkAction runs act on each task of the batch whose state is allowed, in
// one transaction. Each task is locked and its state read just before its
// turn, not all up front: cancelling a parent cancels its subtasks, which
// may come later in the same batch. Tasks are taken in id order, so bulk
// calls over the same tasks lock them in the same order.
func (s *Store) bulkAction(ctx context.Context, op string, b BulkAction, allowed []string,
	act func(ctx context.Context, tx pgx.Tx, a Action, status string) ([]Change, error)) (BulkOutcome, error) {
	ids := slices.Clone(b.TaskIDs)
	slices.SortFunc(ids, func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) })
	ids = slices.Compact(ids)
	var out BulkOutcome
	err := s.inTx(ctx, op, func(tx pgx.Tx) error {
		out = BulkOutcome{Skipped: map[string]int{}} // afresh on a retried transaction
		for _, id := range ids {
			var status string
			if err := tx.QueryRow(ctx, taskLockSQL, id).Scan(&status); err != nil {
				if errors.Is(err, pgx.ErrNoRows) {
					out.Missing++
					continue
				}
				return err
			}
			if !slices.Contains(allowed, status) {
				out.Skipped[status]++
				continue
			}
			a := Action{TaskID: id, Actor: b.Actor, StepsChannel: b.StepsChannel, CancelChannel: b.CancelChannel,
				Stagger: b.Stagger, maxResultBytes: s.maxResultBytes}
			changes, err := act(ctx, tx, a, status)
			if err != nil {
				return err
			}
			out.Changed = append(out.Changed, id)
			out.Changes = append(out.Changes, changes...)
		}
		if b.InTx != nil && len(out.Changes) > 0 {
			if err := b.InTx(ctx, Tx{tx}, out.Changes); err != nil {
				return keep(err)
			}
		}
		return nil
	})
	if err != nil {
		return BulkOutcome{}, err
	}
	return out, nil
}
