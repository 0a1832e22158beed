package store

import (
	"context"
	"errors"
	"sync"
)

// groupWriter group-commits small writes. A write alone pays a round trip,
// a statement and a commit of its own; under concurrent API traffic those
// dominate, and concurrent single-row inserts into the same index pages
// contend for them. Items that arrive while others are being written wait
// in a queue, and each writer takes everything queued (up to max) and
// writes it as ONE batch. write answers every item of its batch when it
// succeeds (each item carries its own reply channel) and returns the error
// otherwise: one bad item fails the whole batch, so each item is then
// written alone, and fail answers an item that fails alone — one
// request's error never becomes its neighbours'.
type groupWriter[T any] struct {
	queue   chan T
	max     int
	writers int
	write   func(batch []T) error
	fail    func(item T, err error)
	once    sync.Once
	stop    chan struct{}
	running sync.WaitGroup
	mu      sync.RWMutex // held to enqueue; close takes it to refuse new items
	closed  bool
}

func newGroupWriter[T any](max, writers int, write func(batch []T) error, fail func(item T, err error)) *groupWriter[T] {
	return &groupWriter[T]{queue: make(chan T, 4*max), max: max, writers: writers, write: write, fail: fail, stop: make(chan struct{})}
}

// flush writes batch, or each of its items alone when the batch fails.
func (g *groupWriter[T]) flush(batch []T) {
	err := g.write(batch)
	switch {
	case err == nil:
	case len(batch) == 1:
		g.fail(batch[0], err)
	default:
		for _, item := range batch {
			g.flush([]T{item})
		}
	}
}

var errStoreClosed = errors.New("store is closed")

// submit queues item; the caller then waits on the item's reply channel.
func (g *groupWriter[T]) submit(ctx context.Context, item T) error {
	g.once.Do(func() {
		for range g.writers {
			g.running.Add(1)
			go g.run()
		}
	})
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return errStoreClosed
	}
	select {
	case g.queue <- item:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *groupWriter[T]) run() {
	defer g.running.Done()
	for {
		var first T
		select {
		case first = <-g.queue:
		case <-g.stop:
			return
		}
		batch := []T{first}
	drain:
		for len(batch) < g.max {
			select {
			case item := <-g.queue:
				batch = append(batch, item)
			default:
				break drain
			}
		}
		g.flush(batch)
	}
}

// close refuses new items, stops the writers, and writes the items already
// accepted. Safe twice.
func (g *groupWriter[T]) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.mu.Unlock()
	close(g.stop)
	g.running.Wait()
	var rest []T
	for {
		select {
		case item := <-g.queue:
			rest = append(rest, item)
		default:
			if len(rest) > 0 {
				g.flush(rest)
			}
			return
		}
	}
}
