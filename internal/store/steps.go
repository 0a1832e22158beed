package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ClaimedStep is a step this replica now runs, with what its handler needs.
type ClaimedStep struct {
	StepID         uuid.UUID
	TaskID         uuid.UUID
	NamedTaskID    int64
	Namespace      string
	TaskName       string
	TaskVersion    string
	Name           string
	Handler        string
	Attempt        int
	Inputs         json.RawMessage
	Context        json.RawMessage
	CorrelationID  string
	Traceparent    string
	LeaseExpiresAt time.Time
	Parents        map[string]json.RawMessage
	// TaskStarted is set on the claimed steps of a task this claim moved
	// from pending to in_progress.
	TaskStarted bool
	// ReadyAt is when the step became runnable (its queue latency ends at
	// the claim).
	ReadyAt time.Time
}

// ClaimParams says what to claim.
type ClaimParams struct {
	Queue string        // "" for the engine's own handlers
	Limit int           // at most this many
	Owner string        // the replica id, recorded as lease owner
	Lease time.Duration // lease length
	// InTx, when set, runs the claim in a transaction and calls the hook in
	// it with the claimed steps (for an event outbox); an error rolls the
	// claim back. Without it the claim is a single statement.
	InTx func(ctx context.Context, tx Tx, steps []ClaimedStep) error
	// Held, when set, is called when the claim held back candidates rather
	// than claiming them (a paused template, no concurrency slot, no rate
	// token; or, rarely, a candidate updated since the claim's snapshot,
	// which the next claim can take): n of them, and when the earliest
	// rate-limited one is due (zero for none). Held rows no longer fill the
	// batch, so a caller that got fewer steps than it asked for should
	// claim again.
	Held func(n int, nextDue time.Time)
}

//go:embed sql/steps_claim.sql
var stepsClaimSQL string

// ClaimSteps claims up to p.Limit runnable steps in one statement.
func (s *Store) ClaimSteps(ctx context.Context, p ClaimParams) (steps []ClaimedStep, err error) {
	if p.InTx != nil {
		err = s.inHotTx(ctx, "claim steps", func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, stepsClaimSQL, p.Queue, p.Limit, p.Owner, p.Lease.Milliseconds())
			if err != nil {
				return err
			}
			if steps, err = scanClaimed(rows, p.Held); err != nil {
				return err
			}
			return p.InTx(ctx, Tx{tx}, steps)
		})
		return steps, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	// One round trip, one implicit transaction (a batch ends with a single
	// Sync): the planner settings hold for the claim and end with it.
	var b pgx.Batch
	b.Queue(hotPlannerSQL)
	claim := b.Queue(stepsClaimSQL, p.Queue, p.Limit, p.Owner, p.Lease.Milliseconds())
	claim.Query(func(rows pgx.Rows) error {
		steps, err = scanClaimed(rows, p.Held)
		return err
	})
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return nil, translate("claim steps", err)
	}
	return steps, nil
}

func scanClaimed(rows pgx.Rows, held func(int, time.Time)) (steps []ClaimedStep, err error) {
	defer rows.Close()
	for rows.Next() {
		var c ClaimedStep
		var inputs, parents []byte
		if err := rows.Scan(&c.StepID, &c.TaskID, &c.NamedTaskID, &c.Namespace, &c.TaskName, &c.TaskVersion, &c.Name,
			&c.Handler, &c.Attempt, &inputs, &c.Context, &c.CorrelationID, &c.Traceparent, &c.LeaseExpiresAt,
			&parents, &c.TaskStarted, &c.ReadyAt); err != nil {
			return nil, err
		}
		if c.StepID == uuid.Nil { // the summary of held candidates
			if held != nil {
				var due time.Time
				if c.LeaseExpiresAt.After(time.Unix(0, 0)) {
					due = c.LeaseExpiresAt
				}
				held(c.Attempt, due)
			}
			continue
		}
		c.Inputs = inputs
		if len(parents) > 0 {
			if err := json.Unmarshal(parents, &c.Parents); err != nil {
				return nil, fmt.Errorf("parent results: %w", err)
			}
		}
		steps = append(steps, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return steps, nil
}

// Completion is a successful attempt.
type Completion struct {
	StepID  uuid.UUID
	Attempt int
	Results json.RawMessage
}

// Failure is a failed attempt.
type Failure struct {
	StepID    uuid.UUID
	Attempt   int
	Error     json.RawMessage // {"message": …, …}
	Retryable bool            // the handler's verdict; the step's own settings and budget are checked too
	Delay     time.Duration   // backoff before the retry, if one is allowed
}

// StepRef names a step of a task at an attempt.
type StepRef struct {
	StepID  uuid.UUID
	TaskID  uuid.UUID
	Attempt int
}

// RetryRef is a failed attempt that will run again at RetryAt.
type RetryRef struct {
	StepRef
	RetryAt time.Time
}

// TaskFinal is a task that reached a final state.
type TaskFinal struct {
	TaskID uuid.UUID
	Status string
	// Run counts the task's runs: 1, plus one per manual retry of the
	// failed task; each run's finalisation is its own (for traces).
	Run int
}

// FinishResult is what a flush changed; outcomes whose fencing token no
// longer matched are absent.
type FinishResult struct {
	Completed      []StepRef
	Retried        []RetryRef
	Failed         []StepRef // failed for good
	Finalized      []TaskFinal
	BecameRunnable int
}

// Empty reports a flush that changed nothing.
func (r *FinishResult) Empty() bool {
	return len(r.Completed)+len(r.Retried)+len(r.Failed)+len(r.Finalized) == 0
}

//go:embed sql/steps_complete.sql
var stepsCompleteSQL string

//go:embed sql/steps_fail.sql
var stepsFailSQL string

// FinishParams is one flush of finished attempts.
type FinishParams struct {
	Owner       string
	Completions []Completion
	Failures    []Failure
	// Channel is NOTIFYed once when steps became runnable.
	Channel string
	// Stagger spaces the runnable times of a task's children released together.
	Stagger time.Duration
	// InTx, when set, runs inside the transaction after every change, with
	// the result; an error rolls everything back.
	InTx func(ctx context.Context, tx Tx, r *FinishResult) error

	maxResultBytes int // the store's, for subtasks' results (settleSubtasks)
}

// FinishSteps records finished attempts in ONE transaction: steps complete
// or fail (fenced by attempt), children of completed steps are released,
// task counters move, and tasks whose last step finished are finalised.
func (s *Store) FinishSteps(ctx context.Context, p FinishParams) (*FinishResult, error) {
	var res *FinishResult
	p.maxResultBytes = s.maxResultBytes
	err := s.inHotTx(ctx, "finish steps", func(tx pgx.Tx) error {
		res = &FinishResult{}
		if err := finishInTx(ctx, tx, p, res); err != nil {
			return err
		}
		if p.InTx != nil {
			return p.InTx(ctx, Tx{tx}, res)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func finishInTx(ctx context.Context, tx pgx.Tx, p FinishParams, res *FinishResult) error {
	if len(p.Completions) > 0 {
		ids := make([]uuid.UUID, len(p.Completions))
		for i, c := range p.Completions {
			ids[i] = c.StepID
		}
		inputs := keyedByID(ids, func(b []byte, i int) []byte {
			c := p.Completions[i]
			b = append(strconv.AppendInt(b, int64(c.Attempt), 10), ',')
			if len(c.Results) == 0 {
				return append(b, "null"...)
			}
			return append(b, c.Results...)
		})
		rows, err := tx.Query(ctx, stepsCompleteSQL, ids, inputs, p.Owner)
		if err != nil {
			return err
		}
		refs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StepRef, error) {
			var r StepRef
			err := row.Scan(&r.StepID, &r.TaskID, &r.Attempt)
			return r, err
		})
		if err != nil {
			return err
		}
		res.Completed = refs
	}
	if len(p.Failures) > 0 {
		ids := make([]uuid.UUID, len(p.Failures))
		for i, f := range p.Failures {
			ids[i] = f.StepID
		}
		inputs := keyedByID(ids, func(b []byte, i int) []byte {
			f := p.Failures[i]
			b = append(strconv.AppendInt(b, int64(f.Attempt), 10), ',')
			if len(f.Error) == 0 {
				b = append(b, "{}"...)
			} else {
				b = append(b, f.Error...)
			}
			b = append(strconv.AppendBool(append(b, ','), f.Retryable), ',')
			return strconv.AppendInt(b, f.Delay.Milliseconds(), 10)
		})
		rows, err := tx.Query(ctx, stepsFailSQL, ids, inputs, p.Owner)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r StepRef
			var willRetry bool
			var retryAt *time.Time
			if err := rows.Scan(&r.StepID, &r.TaskID, &r.Attempt, &willRetry, &retryAt); err != nil {
				rows.Close()
				return err
			}
			if willRetry && retryAt != nil {
				res.Retried = append(res.Retried, RetryRef{StepRef: r, RetryAt: *retryAt})
			} else {
				res.Failed = append(res.Failed, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	done := make([]uuid.UUID, 0, len(res.Completed))
	for _, r := range res.Completed {
		done = append(done, r.StepID)
	}
	return settle(ctx, tx, settleParams{
		released: done,
		counts:   countByTask(res.Completed, res.Failed),
		channel:  p.Channel,
		stagger:  p.Stagger,
		actor:    "",
		meta:     `{}`,

		maxResultBytes: p.maxResultBytes,
	}, res)
}

// taskDelta is how many steps of a task finished, and how many of those failed.
type taskDelta struct{ done, failed int }

// keyedByID builds the JSON object a flush statement reads each row's
// inputs from, by id: {"<ids[i]>": [<values of row i>], …}. Its statements
// update rows found by the primary key's scan of the id array (in id
// order, with no join the planner could turn around), and each row looks
// its values up in the object. vals appends row i's values to b.
func keyedByID(ids []uuid.UUID, vals func(b []byte, i int) []byte) json.RawMessage {
	b := make([]byte, 0, 2+len(ids)*48)
	b = append(b, '{')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = appendUUID(b, id)
		b = append(b, `":[`...)
		b = vals(b, i)
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendUUID appends id in its canonical text form, as PostgreSQL's
// uuid::text writes it.
func appendUUID(b []byte, id uuid.UUID) []byte {
	const digits = "0123456789abcdef"
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[c>>4], digits[c&0xf])
	}
	return b
}

func countByTask(completed, failed []StepRef) map[uuid.UUID]*taskDelta {
	m := map[uuid.UUID]*taskDelta{}
	add := func(id uuid.UUID, f bool) {
		d, ok := m[id]
		if !ok {
			d = &taskDelta{}
			m[id] = d
		}
		d.done++
		if f {
			d.failed++
		}
	}
	for _, r := range completed {
		add(r.TaskID, false)
	}
	for _, r := range failed {
		add(r.TaskID, true)
	}
	return m
}

//go:embed sql/steps_release_children.sql
var stepsReleaseChildrenSQL string

//go:embed sql/tasks_count_finished.sql
var tasksCountFinishedSQL string

//go:embed sql/tasks_stalled.sql
var tasksStalledSQL string

//go:embed sql/tasks_finalize.sql
var tasksFinalizeSQL string

type settleParams struct {
	released []uuid.UUID              // steps now done for their children (complete or resolved)
	counts   map[uuid.UUID]*taskDelta // finished steps by task
	channel  string
	stagger  time.Duration
	actor    string
	meta     string
	// maxResultBytes caps the results a finished subtask hands its parent step.
	maxResultBytes int
}

// settle is what follows any step reaching a final state: release its
// children, count it on its task, and finalise tasks with nothing left to do.
func settle(ctx context.Context, tx pgx.Tx, p settleParams, res *FinishResult) error {
	if len(p.released) > 0 {
		var ready, notified int64
		if err := tx.QueryRow(ctx, stepsReleaseChildrenSQL, p.released, p.stagger.Microseconds(), p.channel).Scan(&ready, &notified); err != nil {
			return err
		}
		res.BecameRunnable += int(ready)
	}
	if len(p.counts) == 0 {
		return nil
	}
	taskIDs := make([]uuid.UUID, 0, len(p.counts))
	for id := range p.counts {
		taskIDs = append(taskIDs, id)
	}
	counts := keyedByID(taskIDs, func(b []byte, i int) []byte {
		d := p.counts[taskIDs[i]]
		b = append(strconv.AppendInt(b, int64(d.done), 10), ',')
		return strconv.AppendInt(b, int64(d.failed), 10)
	})
	rows, err := tx.Query(ctx, tasksCountFinishedSQL, taskIDs, counts)
	if err != nil {
		return err
	}
	var finalIDs []uuid.UUID
	var finalStates []string
	var failing []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		var status string
		var unfinished, failed int
		if err := rows.Scan(&id, &status, &unfinished, &failed); err != nil {
			rows.Close()
			return err
		}
		if status != "in_progress" {
			continue // cancelled or otherwise settled by a manual action
		}
		switch {
		case unfinished == 0 && failed == 0:
			finalIDs, finalStates = append(finalIDs, id), append(finalStates, "complete")
		case unfinished == 0:
			finalIDs, finalStates = append(finalIDs, id), append(finalStates, "error")
		case failed > 0:
			failing = append(failing, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(failing) > 0 {
		// Dependents of a failed step never run; the task fails once
		// nothing else can run.
		rows, err := tx.Query(ctx, tasksStalledSQL, failing)
		if err != nil {
			return err
		}
		stalled, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return err
		}
		for _, id := range stalled {
			finalIDs, finalStates = append(finalIDs, id), append(finalStates, "error")
		}
	}
	if len(finalIDs) == 0 {
		return nil
	}
	rows, err = tx.Query(ctx, tasksFinalizeSQL, finalIDs, finalStates, p.meta, nullable(p.actor))
	if err != nil {
		return err
	}
	finals, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TaskFinal, error) {
		var f TaskFinal
		err := row.Scan(&f.TaskID, &f.Status, &f.Run)
		return f, err
	})
	if err != nil {
		return err
	}
	res.Finalized = append(res.Finalized, finals...)
	// Finalised subtasks finish their waiting parent steps in this same
	// transaction (subtask.go).
	return settleSubtasks(ctx, tx, p, finals, res)
}

//go:embed sql/steps_renew_leases.sql
var stepsRenewLeasesSQL string

// RenewLeases extends the leases of running steps and returns those still
// held; the others were lost.
func (s *Store) RenewLeases(ctx context.Context, owner string, steps []StepRef, lease time.Duration) (map[uuid.UUID]bool, error) {
	ids := make([]uuid.UUID, len(steps))
	attempts := make([]int32, len(steps))
	for i, r := range steps {
		ids[i], attempts[i] = r.StepID, int32(r.Attempt)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, stepsRenewLeasesSQL, ids, attempts, lease.Milliseconds(), owner)
	if err != nil {
		return nil, translate("renew leases", err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, translate("renew leases", err)
	}
	m := make(map[uuid.UUID]bool, len(held))
	for _, id := range held {
		m[id] = true
	}
	return m, nil
}

//go:embed sql/steps_rescue_expired.sql
var stepsRescueExpiredSQL string

// RescueResult reports steps taken back from expired leases.
type RescueResult struct {
	Requeued []StepRef
	FinishResult
}

// RescueExpired takes back up to limit steps whose lease expired: pending
// again for any replica, or failed when that was their last attempt.
func (s *Store) RescueExpired(ctx context.Context, rescuer string, limit int, channel string) (*RescueResult, error) {
	return s.RescueExpiredInTx(ctx, rescuer, limit, channel, nil)
}

// RescueExpiredInTx is RescueExpired with a hook that runs inside the
// transaction after every change, with the result (for an event outbox); an
// error rolls everything back.
func (s *Store) RescueExpiredInTx(ctx context.Context, rescuer string, limit int, channel string,
	inTx func(ctx context.Context, tx Tx, r *RescueResult) error) (*RescueResult, error) {
	var res *RescueResult
	err := s.inHotTx(ctx, "rescue expired leases", func(tx pgx.Tx) error {
		res = &RescueResult{}
		rows, err := tx.Query(ctx, stepsRescueExpiredSQL, limit, rescuer)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r StepRef
			var willRetry bool
			if err := rows.Scan(&r.StepID, &r.TaskID, &r.Attempt, &willRetry); err != nil {
				rows.Close()
				return err
			}
			if willRetry {
				res.Requeued = append(res.Requeued, r)
			} else {
				res.Failed = append(res.Failed, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(res.Requeued) > 0 {
			if _, err := tx.Exec(ctx, notifySQL, channel, ""); err != nil {
				return err
			}
		}
		if err := settle(ctx, tx, settleParams{counts: countByTask(nil, res.Failed), channel: channel, meta: `{"reason":"lease_expired"}`,
			maxResultBytes: s.maxResultBytes}, &res.FinishResult); err != nil {
			return err
		}
		if inTx != nil {
			return inTx(ctx, Tx{tx}, res)
		}
		return nil
	})
	return res, err
}

//go:embed sql/steps_release.sql
var stepsReleaseSQL string

// ReleaseSteps hands back running steps of a stopping replica.
func (s *Store) ReleaseSteps(ctx context.Context, owner string, steps []StepRef, channel string) (int, error) {
	ids := make([]uuid.UUID, len(steps))
	attempts := make([]int32, len(steps))
	for i, r := range steps {
		ids[i], attempts[i] = r.StepID, int32(r.Attempt)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var n, notified int64
	if err := s.pool.QueryRow(ctx, stepsReleaseSQL, ids, attempts, owner, channel).Scan(&n, &notified); err != nil {
		return 0, translate("release steps", err)
	}
	return int(n), nil
}

//go:embed sql/steps_next_runnable_at.sql
var stepsNextRunnableAtSQL string

// NextRunnableAt is when the earliest pending step of queue becomes
// runnable; zero when none is scheduled.
func (s *Store) NextRunnableAt(ctx context.Context, queue string) (time.Time, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var t *time.Time
	if err := s.pool.QueryRow(ctx, stepsNextRunnableAtSQL, queue).Scan(&t); err != nil {
		return time.Time{}, translate("next runnable time", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}

//go:embed sql/now.sql
var nowSQL string

// Now is the database's clock: backoff and leases are computed from it,
// never from a replica's clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var t time.Time
	if err := s.pool.QueryRow(ctx, nowSQL).Scan(&t); err != nil {
		return time.Time{}, translate("now", err)
	}
	return t, nil
}
