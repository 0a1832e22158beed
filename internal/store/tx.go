package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Tx is an open transaction handed to hooks that must write in the same
// transaction as a state change (the event outbox). Only the store can use
// it: other packages pass it back to store functions.
type Tx struct{ tx pgx.Tx }

// InTx runs a hook in a transaction of its own and commits it: for what
// could not be written with its change (the engine's outbox catch-up). The
// hook's error is returned as it is, and rolls the transaction back.
func (s *Store) InTx(ctx context.Context, op string, fn func(ctx context.Context, tx Tx) error) error {
	return s.inTx(ctx, op, func(tx pgx.Tx) error {
		if err := fn(ctx, Tx{tx}); err != nil {
			return keep(err)
		}
		return nil
	})
}

// inTx runs fn in a transaction and commits it. Deadlocks and serialization
// failures are retried a few times: the engine locks rows in a fixed order,
// but manual actions (cancel, retry) lock a task before its steps.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	return s.runTx(ctx, op, pgx.TxOptions{}, fn)
}

//go:embed sql/hot_planner.sql
var hotPlannerSQL string

// hotBeginSQL is sent with the simple protocol (no arguments), so both
// statements travel in one round trip.
var hotBeginSQL = "BEGIN;\n" + hotPlannerSQL

// inHotTx is inTx for the engine's hot path: the transaction begins with
// the planner pinned to index-driven plans (see hot_planner.sql), in the
// same round trip as BEGIN.
func (s *Store) inHotTx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	return s.runTx(ctx, op, pgx.TxOptions{BeginQuery: hotBeginSQL}, fn)
}

func (s *Store) runTx(ctx context.Context, op string, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = s.tryTx(ctx, opts, fn)
		if err == nil || !retryable(err) {
			break
		}
		select {
		case <-ctx.Done():
			return translate(op, ctx.Err())
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		}
	}
	if err == nil {
		return nil
	}
	var keep *keepError
	if errors.As(err, &keep) {
		return keep.err
	}
	return translate(op, err)
}

func (s *Store) tryTx(ctx context.Context, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit this is a no-op
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// keepError carries an error that inTx must return as is (a domain error
// decided inside the transaction), not translate.
type keepError struct{ err error }

func (e *keepError) Error() string { return e.err.Error() }

func keep(err error) error { return &keepError{err: err} }

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// StateError reports an action that the current state does not allow.
type StateError struct {
	Resource string // "task" or "step"
	Action   string
	State    string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cannot %s a %s that is %s", e.Action, e.Resource, e.State)
}

// Is makes errors.Is(err, ErrConflict) true for state errors.
func (e *StateError) Is(target error) bool { return target == ErrConflict }
