package graphql

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/store"
)

// loaders batch a request's reads per task: the first resolver that asks
// for the steps (or readiness, or row) of one task loads them for every
// task the request has seen so far in one query. A page of tasks with
// their steps, their steps' readiness and dependency levels thus costs
// one query per kind of data, whatever the page's size. Unlike a
// time-window dataloader, the batches do not depend on goroutine timing,
// so the query count is deterministic.
type loaders struct {
	mu    sync.Mutex
	known []uuid.UUID
	seen  map[uuid.UUID]bool

	tasks     *batch[store.Task]
	steps     *batch[[]store.Step]
	readiness *batch[map[uuid.UUID]store.StepReadiness]
}

func newLoaders(st *store.Store) *loaders {
	l := &loaders{seen: map[uuid.UUID]bool{}}
	l.tasks = newBatch(l.knownTasks, func(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]store.Task, error) {
		rows, err := st.TasksByID(ctx, ids)
		out := make(map[uuid.UUID]store.Task, len(rows))
		for _, t := range rows {
			out[t.TaskID] = t
		}
		return out, err
	})
	l.steps = newBatch(l.knownTasks, func(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID][]store.Step, error) {
		rows, err := st.StepsOfTasks(ctx, ids)
		out := make(map[uuid.UUID][]store.Step, len(ids))
		for _, s := range rows {
			out[s.TaskID] = append(out[s.TaskID], s)
		}
		return out, err
	})
	l.readiness = newBatch(l.knownTasks, func(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]map[uuid.UUID]store.StepReadiness, error) {
		rows, err := st.ReadinessOfTasks(ctx, ids)
		out := make(map[uuid.UUID]map[uuid.UUID]store.StepReadiness, len(ids))
		for _, r := range rows {
			if out[r.TaskID] == nil {
				out[r.TaskID] = map[uuid.UUID]store.StepReadiness{}
			}
			out[r.TaskID][r.StepID] = r.StepReadiness
		}
		return out, err
	})
	return l
}

// see records tasks the request answers with, so that later loads
// include them.
func (l *loaders) see(ids ...uuid.UUID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if !l.seen[id] {
			l.seen[id] = true
			l.known = append(l.known, id)
		}
	}
}

func (l *loaders) knownTasks() []uuid.UUID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]uuid.UUID(nil), l.known...)
}

// batch loads a value per task id, for all the known ids not loaded yet
// at once; concurrent callers for ids of a batch in flight wait for it.
type batch[V any] struct {
	known func() []uuid.UUID
	fetch func(context.Context, []uuid.UUID) (map[uuid.UUID]V, error)

	mu    sync.Mutex
	calls map[uuid.UUID]*call[V]
}

type call[V any] struct {
	done chan struct{}
	vals map[uuid.UUID]V
	err  error
}

func newBatch[V any](known func() []uuid.UUID, fetch func(context.Context, []uuid.UUID) (map[uuid.UUID]V, error)) *batch[V] {
	return &batch[V]{known: known, fetch: fetch, calls: map[uuid.UUID]*call[V]{}}
}

// load returns id's value; ok is false when the store has none.
func (b *batch[V]) load(ctx context.Context, id uuid.UUID) (v V, ok bool, err error) {
	known := b.known()
	b.mu.Lock()
	c, inFlight := b.calls[id]
	if !inFlight {
		c = &call[V]{done: make(chan struct{})}
		ids := []uuid.UUID{id}
		b.calls[id] = c
		for _, k := range known {
			if _, ok := b.calls[k]; !ok {
				b.calls[k] = c
				ids = append(ids, k)
			}
		}
		b.mu.Unlock()
		c.vals, c.err = b.fetch(ctx, ids)
		close(c.done)
	} else {
		b.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return v, false, ctx.Err()
		}
	}
	if c.err != nil {
		return v, false, c.err
	}
	v, ok = c.vals[id]
	return v, ok, nil
}

// prime stores a value read another way (a task with its steps read in
// one round trip), so that no batch reads it again.
func (b *batch[V]) prime(id uuid.UUID, v V) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.calls[id]; ok {
		return
	}
	c := &call[V]{done: make(chan struct{}), vals: map[uuid.UUID]V{id: v}}
	close(c.done)
	b.calls[id] = c
}
