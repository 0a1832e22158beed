// Package notifier delivers PostgreSQL notifications to the parts of a
// replica that wait for them (the engine's claim loop, the template
// registry, remote-worker long polls) over ONE dedicated connection, so
// waiting costs the database nothing per waiter and the pool's connection
// budget is not spent on LISTEN.
//
// Notifications can be lost (while the connection is down, for instance), so
// every subscriber keeps a slow poll as a fallback; after a reconnect each
// subscriber gets a synthetic notification with the payload Reconnected so
// it can catch up at once.
package notifier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reconnected is the payload delivered to every subscriber after the
// listening connection was re-established: anything may have been missed.
const Reconnected = "\x00reconnected"

// Config configures a Notifier.
type Config struct {
	// DatabaseURL is the PostgreSQL connection string; required.
	DatabaseURL string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// ReconnectMax caps the delay between reconnection attempts; default 5 s.
	ReconnectMax time.Duration
}

// Notifier listens on one connection and fans notifications out.
type Notifier struct {
	cfg    Config
	logger *slog.Logger

	mu     sync.Mutex
	subs   map[string]map[*subscription]struct{}
	wake   chan struct{} // a channel was added: the listener must LISTEN to it
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed after the first successful LISTEN
}

type subscription struct {
	ch chan string
}

// New validates cfg.
func New(cfg Config) (*Notifier, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("notifier: DatabaseURL is required")
	}
	cfg.ReconnectMax = cmp.Or(cfg.ReconnectMax, 5*time.Second)
	return &Notifier{
		cfg:    cfg,
		logger: cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "notifier")),
		subs:   map[string]map[*subscription]struct{}{},
		wake:   make(chan struct{}, 1),
		ready:  make(chan struct{}),
	}, nil
}

// Subscribe returns a channel that receives the payloads of notifications on
// channel, and a function to stop. The buffer is small and a full buffer
// drops the payload: subscribers treat a notification as "look now", not as
// data, so a dropped duplicate loses nothing.
func (n *Notifier) Subscribe(channel string) (<-chan string, func()) {
	s := &subscription{ch: make(chan string, 16)}
	n.mu.Lock()
	set, ok := n.subs[channel]
	if !ok {
		set = map[*subscription]struct{}{}
		n.subs[channel] = set
	}
	set[s] = struct{}{}
	n.mu.Unlock()
	if !ok {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
	return s.ch, func() {
		n.mu.Lock()
		delete(n.subs[channel], s)
		n.mu.Unlock()
	}
}

// Ready is closed once the notifier listens (tests wait on it before
// sending a notification they expect to see).
func (n *Notifier) Ready() <-chan struct{} { return n.ready }

// Start runs the listener in the background; it returns at once.
func (n *Notifier) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cancel != nil {
		return nil
	}
	ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	n.done = make(chan struct{})
	go n.run(ctx)
	return nil
}

// Stop ends the listener and waits for it. Safe twice and before Start.
func (n *Notifier) Stop(ctx context.Context) error {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *Notifier) run(ctx context.Context) {
	defer close(n.done)
	delay := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		err := n.listen(ctx, !first)
		if ctx.Err() != nil {
			return
		}
		first = false
		n.logger.WarnContext(ctx, "listen connection lost; reconnecting", slog.String("error", err.Error()), slog.Duration("retry_in", delay))
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, n.cfg.ReconnectMax)
	}
}

// listen holds one connection until it fails or ctx ends.
func (n *Notifier) listen(ctx context.Context, reconnect bool) error {
	conn, err := pgx.Connect(ctx, n.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	listening := map[string]bool{}
	sync := func() error {
		n.mu.Lock()
		var channels []string
		for ch := range n.subs {
			if !listening[ch] {
				channels = append(channels, ch)
			}
		}
		n.mu.Unlock()
		for _, ch := range channels {
			if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
				return fmt.Errorf("listen %s: %w", ch, err)
			}
			listening[ch] = true
		}
		return nil
	}
	if err := sync(); err != nil {
		return err
	}
	select {
	case <-n.ready:
	default:
		close(n.ready)
	}
	if reconnect {
		n.deliverAll(Reconnected)
	}
	for {
		// Wait for a notification, or wake up to LISTEN on a new channel.
		waitCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-n.wake:
				cancel()
			case <-waitCtx.Done():
			}
		}()
		note, err := conn.WaitForNotification(waitCtx)
		woke := waitCtx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if woke {
			// The interrupted wait may have left the connection mid-read;
			// pgx closes it in that case, and the next call reports it.
			if conn.IsClosed() {
				return errors.New("connection closed while waking")
			}
			if err := sync(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		n.deliver(note.Channel, note.Payload)
	}
}

func (n *Notifier) deliver(channel, payload string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for s := range n.subs[channel] {
		select {
		case s.ch <- payload:
		default:
		}
	}
}

func (n *Notifier) deliverAll(payload string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, set := range n.subs {
		for s := range set {
			select {
			case s.ch <- payload:
			default:
			}
		}
	}
}
