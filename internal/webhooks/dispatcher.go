package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/version"
)

// Headers of a delivery besides the signature.
const (
	EventHeader       = "X-Tasker-Event"
	EventIDHeader     = "X-Tasker-Event-ID"
	DeliveryHeader    = "X-Tasker-Delivery"
	AttemptHeader     = "X-Tasker-Attempt"
	CorrelationHeader = "X-Correlation-ID"
)

// Start loads the subscriptions and starts the dispatcher; it returns at
// once (a database that is down is retried in the background).
func (s *Service) Start(ctx context.Context) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.started {
		return nil
	}
	s.started = true
	loadCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	s.reload(loadCtx)
	cancel()
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var outbox, changes <-chan string
	if s.cfg.Notifier != nil {
		var unsub1, unsub2 func()
		outbox, unsub1 = s.cfg.Notifier.Subscribe(s.store.OutboxChannel())
		changes, unsub2 = s.cfg.Notifier.Subscribe(s.store.WebhooksChannel())
		go func() { <-ctx.Done(); unsub1(); unsub2() }()
	}
	s.loops.Add(2)
	go func() { defer s.loops.Done(); s.followSubscriptions(ctx, changes) }()
	go func() { defer s.loops.Done(); s.dispatch(ctx, outbox) }()
	return nil
}

// Stop stops taking deliveries and waits for those in flight until ctx
// ends; those cut short are retried after their visibility timeout. Safe
// twice and before Start.
func (s *Service) Stop(ctx context.Context) error {
	s.lifeMu.Lock()
	started := s.started
	s.lifeMu.Unlock()
	if !started {
		return nil
	}
	s.stopOnce.Do(func() { s.cancel() })
	done := make(chan struct{})
	go func() { s.loops.Wait(); s.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wake makes the dispatcher look for due deliveries now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) followSubscriptions(ctx context.Context, changes <-chan string) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-t.C:
		}
		s.reload(ctx)
	}
}

// dispatch takes due deliveries while slots are free, then sleeps until a
// notification, the next due time or the poll interval.
func (s *Service) dispatch(ctx context.Context, outbox <-chan string) {
	for ctx.Err() == nil {
		free := cap(s.slots) - len(s.slots)
		if free > 0 {
			list, err := s.store.ClaimDeliveries(ctx, free, s.cfg.Timeout+30*time.Second)
			if err != nil && ctx.Err() == nil {
				s.logger.Warn("webhooks: taking deliveries failed", slog.String("error", err.Error()))
			}
			for _, d := range list {
				s.slots <- struct{}{}
				s.inflight.Add(1)
				go func() {
					defer s.inflight.Done()
					s.deliver(ctx, d)
					<-s.slots
					s.Wake()
				}()
			}
			if len(list) == free {
				continue
			}
		}
		wait := s.cfg.PollInterval
		if free > 0 {
			if next, err := s.store.NextDeliveryAt(ctx); err == nil && !next.IsZero() {
				wait = min(wait, max(time.Until(next), 10*time.Millisecond))
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-outbox:
		case <-s.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// deliver makes one attempt and records it. The attempt runs on its own
// deadline, so stopping the replica lets it finish.
func (s *Service) deliver(ctx context.Context, d store.Delivery) {
	attemptCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	started := time.Now()
	code, retryAfter, err := s.send(attemptCtx, d)
	elapsed := time.Since(started)
	a := store.DeliveryAttempt{DeliveryID: d.ID, Attempt: d.Attempt, StatusCode: code, Duration: elapsed, Replica: s.cfg.ReplicaID}
	switch {
	case err == nil:
		a.Outcome = store.DeliveryDelivered
	case code == http.StatusGone:
		a.Outcome, a.Error = store.DeliveryFailed, err.Error()+" (410 Gone: the receiver asks not to retry)"
	case d.Attempt >= s.cfg.MaxAttempts:
		a.Outcome, a.Error = store.DeliveryFailed, fmt.Sprintf("%v (attempt %d of %d: giving up)", err, d.Attempt, s.cfg.MaxAttempts)
	default:
		a.Outcome, a.Error, a.RetryIn = store.DeliveryRetry, err.Error(), s.backoff(d.Attempt, retryAfter)
	}
	recordCtx, cancelRecord := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelRecord()
	if rerr := s.store.RecordDelivery(recordCtx, a); rerr != nil {
		// The attempt counts anyway; the delivery is retried after its visibility timeout.
		s.logger.Warn("webhooks: recording a delivery failed", slog.String("delivery_id", d.ID.String()), slog.String("error", rerr.Error()))
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.Delivered(a.Outcome, elapsed)
	}
	level := slog.LevelDebug
	if a.Outcome != store.DeliveryDelivered {
		level = slog.LevelWarn
	}
	s.logger.Log(ctx, level, "webhook delivery", slog.String("delivery_id", d.ID.String()),
		slog.String("webhook_id", d.WebhookID.String()), slog.String("event", d.EventName),
		slog.Int("attempt", d.Attempt), slog.Int("status", code), slog.String("outcome", a.Outcome),
		slog.String("error", a.Error), slog.Duration("retry_in", a.RetryIn))
}

// send POSTs the delivery; a non-2xx answer is an error.
func (s *Service) send(ctx context.Context, d store.Delivery) (code int, retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, 0, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "taskerd-webhooks/"+version.Get().Version)
	h.Set(EventHeader, d.EventName)
	h.Set(EventIDHeader, d.EventID.String())
	h.Set(DeliveryHeader, d.ID.String())
	h.Set(AttemptHeader, strconv.Itoa(d.Attempt))
	var env struct {
		CorrelationID string `json:"correlation_id"`
	}
	if json.Unmarshal(d.Body, &env) == nil && env.CorrelationID != "" {
		h.Set(CorrelationHeader, env.CorrelationID)
	}
	h.Set(SignatureHeader, Sign(d.Secret, time.Now(), d.Body))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		var urlErr interface{ Timeout() bool }
		if errors.As(err, &urlErr) && urlErr.Timeout() {
			return 0, 0, fmt.Errorf("no answer within %s", s.cfg.Timeout)
		}
		return 0, 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After")),
		fmt.Errorf("receiver answered %d: %s", resp.StatusCode, strings.TrimSpace(string(snippet)))
}

// backoff is the delay before the attempt after attempt: a receiver's
// Retry-After wins, else base × 2^(attempt-1); capped, ±10 %.
func (s *Service) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, s.cfg.BackoffMax)
	}
	d := s.cfg.BackoffBase
	for i := 1; i < attempt && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BackoffMax)
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
