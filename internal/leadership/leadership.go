// Package leadership elects one replica among those sharing a database to
// run the work that must happen once (maintenance), by a lease row with an
// expiry (see migration 00010 for why not an advisory lock).
package leadership

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/taskerd/taskerd/internal/store"
)

// Defaults.
const (
	DefaultTTL  = 15 * time.Second
	DefaultName = "maintenance"
)

// Config configures an Elector.
type Config struct {
	// Store is the database; required.
	Store *store.Store
	// ReplicaID names this replica as a candidate; required.
	ReplicaID string
	// Name is the lease contended for; default "maintenance".
	Name string
	// TTL is how long a lease lasts without renewal; the holder renews every
	// third of it, and others take over within one TTL of its death;
	// default 15 s.
	TTL time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Status is what an Elector knows of the current leadership.
type Status struct {
	Leader    bool      `json:"leader"`     // this replica leads
	Holder    string    `json:"holder"`     // the leader's replica id, "" when none is known
	ExpiresAt time.Time `json:"expires_at"` // when the current lease ends without renewal
}

// Elector contends for a lease and keeps it while it can.
type Elector struct {
	cfg     Config
	logger  *slog.Logger
	mu      sync.Mutex
	status  Status
	changed chan struct{} // closed and replaced on every change of Leader
	cancel  context.CancelFunc
	done    chan struct{}
}

// New validates cfg.
func New(cfg Config) (*Elector, error) {
	if cfg.Store == nil || cfg.ReplicaID == "" {
		return nil, errors.New("leadership: Store and ReplicaID are required")
	}
	cfg.Name = cmp.Or(cfg.Name, DefaultName)
	cfg.TTL = cmp.Or(cfg.TTL, DefaultTTL)
	if cfg.TTL < 300*time.Millisecond {
		return nil, errors.New("leadership: TTL must be at least 300ms")
	}
	logger := cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "leadership"))
	return &Elector{cfg: cfg, logger: logger, changed: make(chan struct{})}, nil
}

// Start begins contending; it returns at once.
func (e *Elector) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done != nil {
		return nil
	}
	ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.done = make(chan struct{})
	go e.run(ctx)
	return nil
}

// Stop stops contending and resigns the lease if held, so another replica
// takes over at once. Safe twice and before Start.
func (e *Elector) Stop(ctx context.Context) error {
	e.mu.Lock()
	cancel, done := e.cancel, e.done
	e.cancel = nil
	e.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	if e.IsLeader() {
		e.set(Status{})
		if err := e.cfg.Store.ResignLease(ctx, e.cfg.Name, e.cfg.ReplicaID); err != nil {
			return err
		}
		e.logger.InfoContext(ctx, "resigned leadership", slog.String("replica", e.cfg.ReplicaID))
	}
	return nil
}

// IsLeader reports whether this replica holds the lease now.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status.Leader && time.Now().Before(e.status.ExpiresAt)
}

// Status returns the last known leadership.
func (e *Elector) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.status
	s.Leader = s.Leader && time.Now().Before(s.ExpiresAt)
	return s
}

// Changed returns a channel closed at the next change of IsLeader.
func (e *Elector) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

func (e *Elector) set(s Status) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.Leader != e.status.Leader {
		close(e.changed)
		e.changed = make(chan struct{})
	}
	e.status = s
}

func (e *Elector) run(ctx context.Context) {
	defer close(e.done)
	for {
		e.attempt(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.cfg.TTL / 3):
		}
	}
}

// attempt takes or renews the lease. The expiry kept locally is measured
// from before the request, so it never outlives the database's.
func (e *Elector) attempt(ctx context.Context) {
	started := time.Now()
	l, err := e.cfg.Store.AcquireLease(ctx, e.cfg.Name, e.cfg.ReplicaID, e.cfg.TTL)
	if err != nil {
		if ctx.Err() == nil {
			e.logger.WarnContext(ctx, "leader lease not renewed", slog.String("error", err.Error()))
		}
		// Leadership lapses on its own when the local expiry passes.
		return
	}
	was := e.IsLeader()
	lead := l.Holder == e.cfg.ReplicaID
	s := Status{Leader: lead, Holder: l.Holder, ExpiresAt: l.ExpiresAt}
	if lead {
		s.ExpiresAt = started.Add(e.cfg.TTL)
	}
	e.set(s)
	switch {
	case lead && !was:
		e.logger.InfoContext(ctx, "became leader", slog.String("replica", e.cfg.ReplicaID))
	case !lead && was:
		e.logger.WarnContext(ctx, "lost leadership", slog.String("replica", e.cfg.ReplicaID), slog.String("holder", l.Holder))
	}
}
