package workers

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/store"
)

// hub wakes the replica's long-polling claims. Waiting costs the database
// nothing per waiter: a notification on the steps channel (or the timer of
// the earliest known backoff, or a slow fallback tick) triggers ONE query
// for all the queues waited on, and only the waiters of queues with
// runnable steps wake up to claim. With no waiter, nothing is queried.
type hub struct {
	store  *store.Store
	logger *slog.Logger
	poll   time.Duration

	mu      sync.Mutex
	waiters map[*waiter]struct{}
	known   map[string]bool // queues the last check covered
	nextDue time.Time       // earliest future runnable time among them (local clock)

	kick chan struct{}
	// checks counts the database queries made for waiters (tests).
	checks atomic.Int64
}

// waiter is one long-polling claim.
type waiter struct {
	queues []string
	ch     chan struct{} // buffered: a wake-up is never lost between claims
}

func newHub(st *store.Store, logger *slog.Logger, poll time.Duration) *hub {
	return &hub{store: st, logger: logger, poll: poll, waiters: map[*waiter]struct{}{}, known: map[string]bool{},
		kick: make(chan struct{}, 1)}
}

// add registers a waiter. It is registered before its first claim, so a
// step made runnable between that claim and the wait still wakes it. When
// the last check did not cover its queues, a check follows (pokes
// coalesce) to learn when their next backoff ends, so the wait ends then
// and not at the fallback tick.
func (h *hub) add(queues []string) *waiter {
	w := &waiter{queues: queues, ch: make(chan struct{}, 1)}
	h.mu.Lock()
	h.waiters[w] = struct{}{}
	unknown := slices.ContainsFunc(queues, func(q string) bool { return !h.known[q] })
	h.mu.Unlock()
	if unknown {
		h.poke()
	}
	return w
}

func (h *hub) remove(w *waiter) {
	h.mu.Lock()
	delete(h.waiters, w)
	h.mu.Unlock()
}

func (h *hub) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// noteDue records a runnable time this replica scheduled (a worker's
// failure with a retry delay), so waiters wake when it comes.
func (h *hub) noteDue(at time.Time) {
	h.mu.Lock()
	if h.nextDue.IsZero() || at.Before(h.nextDue) {
		h.nextDue = at
	}
	h.mu.Unlock()
	h.poke()
}

// minCheckGap spaces the checks: under a busy engine every flush notifies,
// and the notifications of a few milliseconds make one check.
const minCheckGap = 20 * time.Millisecond

// run serves wake-ups until ctx ends.
func (h *hub) run(ctx context.Context, notes <-chan string) {
	timer := time.NewTimer(h.poll)
	defer timer.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-notes:
		case <-h.kick:
		case <-timer.C:
		}
		if gap := minCheckGap - time.Since(last); gap > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(gap):
			}
		}
		drain(notes) // a burst of notifications is one check
		last = time.Now()
		h.check(ctx)
		timer.Reset(h.nextWait())
	}
}

func drain(ch <-chan string) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// nextWait is how long to sleep: until the earliest known runnable time,
// at most the fallback interval.
func (h *hub) nextWait() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	wait := h.poll
	if !h.nextDue.IsZero() {
		wait = min(wait, max(time.Until(h.nextDue), time.Millisecond))
	}
	return wait
}

// check finds which waited queues have runnable steps and wakes their waiters.
func (h *hub) check(ctx context.Context) {
	h.mu.Lock()
	set := map[string]bool{}
	for w := range h.waiters {
		for _, q := range w.queues {
			set[q] = true
		}
	}
	h.mu.Unlock()
	if len(set) == 0 {
		// Nothing is watched: the next waiter's queues need a check.
		h.mu.Lock()
		h.known, h.nextDue = map[string]bool{}, time.Time{}
		h.mu.Unlock()
		return
	}
	queues := make([]string, 0, len(set))
	for q := range set {
		queues = append(queues, q)
	}
	slices.Sort(queues)
	h.checks.Add(1)
	dues, dbNow, err := h.store.QueuesDue(ctx, queues)
	if err != nil {
		if ctx.Err() == nil {
			h.logger.WarnContext(ctx, "checking remote queues failed; waiting workers are woken to claim",
				slog.String("error", err.Error()))
			h.wake(func(string) bool { return true })
		}
		return
	}
	ready := map[string]bool{}
	var next time.Time
	for _, d := range dues {
		switch {
		case d.Next.IsZero():
		case !d.Next.After(dbNow):
			ready[d.Queue] = true
		default:
			// In the local clock: the database's distance to it from now.
			at := time.Now().Add(d.Next.Sub(dbNow))
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
	}
	h.mu.Lock()
	h.known, h.nextDue = set, next
	h.mu.Unlock()
	if len(ready) > 0 {
		h.wake(func(q string) bool { return ready[q] })
	}
}

// wake signals the waiters of queues that match.
func (h *hub) wake(match func(queue string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.waiters {
		if slices.ContainsFunc(w.queues, match) {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
}

// subscribe listens to the steps channel; nil notifier means polling only.
func subscribe(n *notifier.Notifier, channel string) (<-chan string, func()) {
	if n == nil {
		return nil, func() {}
	}
	return n.Subscribe(channel)
}
