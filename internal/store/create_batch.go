package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Task creates are group-committed. A create is small (a task, its steps,
// edges and transitions: one statement), and alone it pays a round trip, a
// commit and a WAL flush of its own; under concurrent API traffic those
// dominate. Creates that arrive while others are being written wait in a
// queue, and each writer takes everything queued (up to maxCreateBatch)
// into ONE transaction: the statements travel pipelined in one round trip,
// then one commit. Every task keeps its own statement, so an idempotency
// key behaves exactly as alone. If the batch fails as a whole (one bad
// create aborts the transaction), each create is retried alone, so one
// request's error never becomes its neighbours'.
const (
	maxCreateBatch = 64
	createWriters  = 2 // one batch commits while the next is written
)

type createReq struct {
	args     []any
	inTx     func(ctx context.Context, tx Tx, taskID uuid.UUID) error
	readBack bool // also read the new task and its steps, in the same pipeline
	done     chan createResult
}

type createResult struct {
	id    uuid.UUID
	err   error // pgx.ErrNoRows: the idempotency key exists
	task  *Task // read back when asked and created
	steps []Step
}

type createBatcher struct {
	s       *Store
	queue   chan *createReq
	once    sync.Once
	stop    chan struct{}
	writers sync.WaitGroup
	mu      sync.RWMutex // held to enqueue; close takes it to refuse new creates
	closed  bool
}

func newCreateBatcher(s *Store) *createBatcher {
	return &createBatcher{s: s, queue: make(chan *createReq, 4*maxCreateBatch), stop: make(chan struct{})}
}

// create writes one task through the queue and returns its id, or
// pgx.ErrNoRows when its idempotency key already exists.
func (b *createBatcher) create(ctx context.Context, args []any, inTx func(context.Context, Tx, uuid.UUID) error, readBack bool) (createResult, error) {
	b.once.Do(func() {
		for range createWriters {
			b.writers.Add(1)
			go b.write()
		}
	})
	req := &createReq{args: args, inTx: inTx, readBack: readBack, done: make(chan createResult, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return createResult{}, errStoreClosed
	}
	select {
	case b.queue <- req:
	case <-ctx.Done():
		b.mu.RUnlock()
		return createResult{}, ctx.Err()
	}
	b.mu.RUnlock()
	select {
	case r := <-req.done:
		return r, r.err
	case <-ctx.Done():
		// The create may still commit: an idempotency key makes the
		// client's retry safe, as after any lost response.
		return createResult{}, ctx.Err()
	}
}

func (b *createBatcher) write() {
	defer b.writers.Done()
	for {
		var first *createReq
		select {
		case first = <-b.queue:
		case <-b.stop:
			return
		}
		batch := []*createReq{first}
	drain:
		for len(batch) < maxCreateBatch {
			select {
			case r := <-b.queue:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		b.writeBatch(batch)
	}
}

// writeBatch writes batch in one transaction, or each alone when that fails.
func (b *createBatcher) writeBatch(batch []*createReq) {
	// Not any one requester's context: a client that gives up must not
	// abort its neighbours' creates.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]createResult, len(batch))
	err := b.s.inTx(ctx, "create task", func(tx pgx.Tx) error {
		var pb pgx.Batch
		for i, r := range batch {
			results[i] = createResult{}
			pb.Queue(taskCreateSQL, r.args...).QueryRow(func(row pgx.Row) error {
				err := row.Scan(&results[i].id)
				if errors.Is(err, pgx.ErrNoRows) {
					results[i].err = err // the idempotency key exists: the caller looks it up
					return nil
				}
				return err
			})
			if !r.readBack {
				continue
			}
			// Read in the same transaction, so the rows are the ones just
			// written; no row when the idempotency key already existed.
			id := r.args[0]
			pb.Queue(taskGetSQL, id).QueryRow(func(row pgx.Row) error {
				t, err := scanTask(row)
				if errors.Is(err, pgx.ErrNoRows) {
					return nil
				}
				results[i].task = t
				return err
			})
			pb.Queue(stepsOfTaskSQL, id, nil).Query(func(rows pgx.Rows) (err error) {
				results[i].steps, err = pgx.CollectRows(rows, scanStep)
				return err
			})
		}
		if err := tx.SendBatch(ctx, &pb).Close(); err != nil {
			return err
		}
		for i, r := range batch {
			if r.inTx != nil && results[i].err == nil {
				if err := r.inTx(ctx, Tx{tx}, results[i].id); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		for i, r := range batch {
			r.done <- results[i]
		}
		return
	}
	if len(batch) == 1 {
		batch[0].done <- createResult{err: err} // translated by inTx
		return
	}
	for _, r := range batch {
		b.writeBatch([]*createReq{r})
	}
}

var errStoreClosed = errors.New("store is closed")

// close refuses new creates, stops the writers, and writes the creates
// already accepted. Safe twice.
func (b *createBatcher) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	b.writers.Wait()
	for {
		select {
		case r := <-b.queue:
			b.writeBatch([]*createReq{r})
		default:
			return
		}
	}
}
