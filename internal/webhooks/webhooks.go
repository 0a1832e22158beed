// Package webhooks delivers events to HTTP endpoints that subscribed to
// them. Deliveries go through an outbox table written in the transaction
// of the transition that caused them (only for events a subscription
// matches), and every replica's dispatcher sends them: signed with
// HMAC-SHA256, retried with backoff, at least once, each attempt logged.
package webhooks

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/store"
)

// Defaults.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultMaxAttempts  = 10
	DefaultBackoffBase  = 5 * time.Second
	DefaultBackoffMax   = time.Hour
	DefaultConcurrency  = 8
	DefaultPollInterval = 30 * time.Second
)

// Errors.
var (
	// ErrNotFound means no live webhook has the id.
	ErrNotFound = errors.New("webhook not found")
)

// ValidationError lists what is wrong with a subscription.
type ValidationError struct {
	// Fields maps JSON pointers into the request to what is wrong there.
	Fields []FieldError
}

// FieldError is one problem of a request.
type FieldError struct {
	Pointer string
	Message string
}

func (e *ValidationError) Error() string {
	if len(e.Fields) == 0 {
		return "invalid webhook"
	}
	return fmt.Sprintf("invalid webhook: %s: %s", e.Fields[0].Pointer, e.Fields[0].Message)
}

// Observer hears of deliveries (the metrics); it must not block.
type Observer interface {
	// Delivered reports one attempt: outcome is delivered, retry or failed.
	Delivered(outcome string, elapsed time.Duration)
}

// Config configures a Service.
type Config struct {
	// Store holds subscriptions and the outbox; required.
	Store *store.Store
	// Bus, when set, carries the events that no transaction records
	// (step.before_handle, …) to the outbox.
	Bus *events.Bus
	// Notifier wakes dispatchers and matchers at once; nil means polling.
	Notifier *notifier.Notifier
	// ReplicaID names this replica in the delivery log.
	ReplicaID string
	// Client sends deliveries; default an http.Client with Timeout.
	Client *http.Client
	// Timeout bounds one attempt; default 10 s.
	Timeout time.Duration
	// MaxAttempts is how many attempts a delivery gets; default 10.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the delay between attempts
	// (base × 2^(attempt-1), capped, ±10 %); defaults 5 s and 1 h.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Concurrency bounds the deliveries in flight on this replica; default 8.
	Concurrency int
	// PollInterval is the fallback re-read of subscriptions and outbox; default 30 s.
	PollInterval time.Duration
	// Observer hears of deliveries; nil means nobody.
	Observer Observer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Service manages subscriptions, matches events against them and delivers.
type Service struct {
	cfg    Config
	store  *store.Store
	logger *slog.Logger

	subs atomic.Pointer[snapshot]
	// Reloads are numbered as they start; one stores its list only if no
	// reload that started after it has stored already. A periodic reload
	// that read the table before a Create committed, and finished after
	// Create's own reload, would otherwise put the old list back: until
	// the next NOTIFY, this replica would not match the new subscription
	// and the engine would leave its events out of the outbox.
	reloadMu     sync.Mutex
	reloadsBegun uint64
	reloadStored uint64
	afterRead    func() // test hook: runs between the read and the store

	lifeMu   sync.Mutex
	started  bool
	stopOnce sync.Once
	cancel   context.CancelFunc
	loops    sync.WaitGroup
	inflight sync.WaitGroup
	slots    chan struct{}
	wake     chan struct{}
}

// snapshot is the set of live subscriptions a replica matches against.
type snapshot struct {
	subs []store.Webhook
}

// New validates cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("webhooks: Store is required")
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.BackoffBase = cmp.Or(cfg.BackoffBase, DefaultBackoffBase)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, DefaultBackoffMax)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultConcurrency)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, DefaultPollInterval)
	if cfg.ReplicaID == "" {
		host, _ := os.Hostname()
		cfg.ReplicaID = fmt.Sprintf("%s-%d", cmp.Or(host, "taskerd"), os.Getpid())
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.MaxAttempts < 1 || cfg.Concurrency < 1 || cfg.BackoffBase > cfg.BackoffMax {
		return nil, errors.New("webhooks: MaxAttempts and Concurrency must be positive and BackoffBase at most BackoffMax")
	}
	s := &Service{
		cfg:    cfg,
		store:  cfg.Store,
		logger: cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "webhooks")),
		slots:  make(chan struct{}, cfg.Concurrency),
		wake:   make(chan struct{}, 1),
	}
	s.subs.Store(&snapshot{})
	if cfg.Bus != nil {
		// Events that record no transition have no transaction to join:
		// they reach the outbox through the bus, just after they happen.
		cfg.Bus.Subscribe("webhooks", s.immediate, events.SubscribeOptions{Match: func(ev *engine.Event) bool {
			return !transactional(ev) && s.wants(ev.Name)
		}})
	}
	return s, nil
}

// CreateRequest is a new subscription.
type CreateRequest struct {
	URL    string
	Events []string
	// Secret keys the signatures; "" generates one.
	Secret      string
	Description string
}

// Create validates and stores a subscription. The returned webhook holds
// the secret; it is shown only now.
func (s *Service) Create(ctx context.Context, req CreateRequest) (*store.Webhook, error) {
	var problems []FieldError
	if u, err := url.Parse(req.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, FieldError{Pointer: "/url", Message: "must be an absolute http or https URL"})
	}
	if len(req.Events) == 0 {
		problems = append(problems, FieldError{Pointer: "/events", Message: `must name at least one event or pattern ("task.*", "step.failed", "*")`})
	}
	for i, p := range req.Events {
		if err := events.ValidatePattern(p); err != nil {
			problems = append(problems, FieldError{Pointer: fmt.Sprintf("/events/%d", i), Message: err.Error()})
		}
	}
	if req.Secret != "" && (len(req.Secret) < 16 || len(req.Secret) > 256) {
		problems = append(problems, FieldError{Pointer: "/secret", Message: "must be 16 to 256 characters (or absent: one is generated)"})
	}
	if len(req.Description) > 1000 {
		problems = append(problems, FieldError{Pointer: "/description", Message: "must be at most 1000 characters"})
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Fields: problems}
	}
	if req.Secret == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		req.Secret = "whsec_" + hex.EncodeToString(b)
	}
	w := &store.Webhook{ID: uuid.Must(uuid.NewV7()), URL: req.URL, Events: req.Events, Secret: req.Secret, Description: req.Description}
	if err := s.store.CreateWebhook(ctx, w); err != nil {
		return nil, err
	}
	s.reload(ctx) // this replica matches it at once; others hear the NOTIFY
	s.logger.InfoContext(ctx, "webhook created", slog.String("webhook_id", w.ID.String()), slog.String("url", redactURL(w.URL)),
		slog.Any("events", w.Events))
	return w, nil
}

// List returns the live subscriptions.
func (s *Service) List(ctx context.Context) ([]store.Webhook, error) { return s.store.Webhooks(ctx) }

// Get returns one live subscription; ErrNotFound when there is none.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*store.Webhook, error) {
	w, err := s.store.Webhook(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return w, err
}

// Delete removes a subscription and cancels its pending deliveries.
func (s *Service) Delete(ctx context.Context, id uuid.UUID) error {
	err := s.store.DeleteWebhook(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return err
	}
	s.reload(ctx)
	s.logger.InfoContext(ctx, "webhook deleted", slog.String("webhook_id", id.String()))
	return nil
}

// Deliveries lists a subscription's deliveries, newest first.
func (s *Service) Deliveries(ctx context.Context, q store.DeliveryQuery) ([]store.DeliveryLog, error) {
	if _, err := s.Get(ctx, q.WebhookID); err != nil {
		return nil, err
	}
	return s.store.Deliveries(ctx, q)
}

// reload re-reads the live subscriptions into the matcher.
func (s *Service) reload(ctx context.Context) {
	s.reloadMu.Lock()
	s.reloadsBegun++
	seq := s.reloadsBegun
	hook := s.afterRead
	s.reloadMu.Unlock()
	list, err := s.store.Webhooks(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.WarnContext(ctx, "webhooks: reading subscriptions failed; matching the previous set", slog.String("error", err.Error()))
		}
		return
	}
	if hook != nil {
		hook()
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if seq < s.reloadStored {
		return // a reload that began later, so read no older a table, has stored
	}
	s.reloadStored = seq
	s.subs.Store(&snapshot{subs: list})
}

// wants reports whether some live subscription matches the event name.
func (s *Service) wants(name string) bool {
	for _, w := range s.subs.Load().subs {
		if events.MatchAny(w.Events, name) {
			return true
		}
	}
	return false
}

// WantsTx reports whether some subscription wants events named name (the
// engine then writes them in the transaction of their transition).
func (s *Service) WantsTx(name string) bool { return s.wants(name) }

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}
