// Package workers serves remote workers: programs in any language that
// claim the steps of "remote:<name>" queues over HTTP, keep them with
// heartbeats and report their outcomes. A step waiting for a worker holds
// no engine slot and no lease; a claimed step is leased to the worker, and
// its attempt number is the fencing token of every later call: a worker
// that lost its lease (it stopped heartbeating, the step was taken back and
// claimed again) changes nothing.
//
// Claims long-poll: they wait for work on a notification from the engine,
// not by polling the database per waiting worker (see hub).
package workers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// Defaults and limits.
const (
	DefaultLease        = 30 * time.Second
	MinLease            = time.Second
	MaxLease            = time.Hour
	MaxWait             = 30 * time.Second
	MaxClaim            = 100
	MaxHandlers         = 32
	MaxWorkerIDLength   = 128
	DefaultPollInterval = 5 * time.Second
	DefaultSeenWithin   = 5 * time.Minute
	DefaultListLimit    = 500
)

// Steps claims and finishes remote steps with the transitions and events
// of the engine's own; the engine implements it.
type Steps interface {
	ClaimRemote(ctx context.Context, p store.ClaimParams) ([]store.ClaimedStep, error)
	// DecorateStep names the attempt's span in step.Traceparent (when
	// tracing is on), so that a worker continues the task's trace under it.
	DecorateStep(ctx context.Context, step handler.Step) (context.Context, handler.Step)
	FinishRemote(ctx context.Context, p store.FinishParams, custom map[uuid.UUID][]handler.CustomEvent) (*store.FinishResult, error)
}

// Config configures a Service.
type Config struct {
	// Store is the database; required.
	Store *store.Store
	// Steps claims and finishes steps; required (the engine).
	Steps Steps
	// Templates gives claimed steps their handler_config, timeout and
	// backoff; required.
	Templates engine.Templates
	// Notifier wakes long-polling claims; nil means the fallback poll only.
	Notifier *notifier.Notifier
	// Schema names the notification channel; default "tasker".
	Schema string
	// ReplicaID is recorded as the replica that saw a worker last.
	ReplicaID string
	// PollInterval is the fallback check of the queues workers wait on,
	// for notifications that were lost; default 5 s.
	PollInterval time.Duration
	// MaxResultBytes caps a step's results; larger fails the step for good;
	// default 1 MiB.
	MaxResultBytes int
	// Backoff is the retry policy for steps whose template sets none;
	// default engine.DefaultBackoff.
	Backoff engine.Backoff
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Service serves the worker endpoints of one replica.
type Service struct {
	cfg     Config
	store   *store.Store
	logger  *slog.Logger
	channel string
	hub     *hub

	lifeMu  sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
	stop    chan struct{} // closed by Stop: waiting claims return at once
	stopped sync.Once
}

// New validates cfg.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("workers: Store is required")
	case cfg.Templates == nil:
		return nil, errors.New("workers: Templates is required")
	case cfg.Steps == nil:
		return nil, errors.New("workers: Steps is required")
	}
	cfg.Schema = cmp.Or(cfg.Schema, "tasker")
	cfg.PollInterval = cmp.Or(cfg.PollInterval, DefaultPollInterval)
	cfg.MaxResultBytes = cmp.Or(cfg.MaxResultBytes, engine.DefaultMaxResultBytes)
	if cfg.Backoff == (engine.Backoff{}) {
		cfg.Backoff = engine.DefaultBackoff
	}
	logger := cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "workers"))
	return &Service{
		cfg: cfg, store: cfg.Store, logger: logger, channel: cfg.Schema + "_steps",
		hub:  newHub(cfg.Store, logger, cfg.PollInterval),
		stop: make(chan struct{}),
	}, nil
}

// Start subscribes to the steps channel and serves wake-ups; it returns at
// once. Subscribe before the notifier starts so its first LISTEN covers it.
func (s *Service) Start(ctx context.Context) error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.started {
		return nil
	}
	s.started = true
	notes, unsubscribe := subscribe(s.cfg.Notifier, s.channel)
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		defer unsubscribe()
		s.hub.run(ctx, notes)
	}()
	return nil
}

// Stop ends every waiting claim at once (with no steps) and the wake-ups;
// later claims return at once. Call it before draining the HTTP server:
// long polls would otherwise hold the drain. Safe twice and before Start.
func (s *Service) Stop(ctx context.Context) error {
	s.stopped.Do(func() { close(s.stop) })
	s.lifeMu.Lock()
	cancel, done := s.cancel, s.done
	s.lifeMu.Unlock()
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

func (s *Service) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// ClaimRequest asks for up to Max steps of the given queues.
type ClaimRequest struct {
	// WorkerID names the worker; it becomes the steps' lease owner.
	WorkerID string
	// Handlers are the queues served: "remote:refunds", ….
	Handlers []string
	// Max is how many steps at most; default 1.
	Max int
	// Wait is how long to wait for work when there is none (long poll);
	// at most 30 s.
	Wait time.Duration
	// Lease is how long the steps are the worker's without a heartbeat;
	// default 30 s.
	Lease time.Duration
}

// ClaimedStep is a step leased to a worker, with what it needs to run it.
type ClaimedStep struct {
	StepID uuid.UUID
	TaskID uuid.UUID
	// Attempt counts from 1; it is the fencing token of heartbeat, complete
	// and fail.
	Attempt       int
	Handler       string
	StepName      string
	Namespace     string
	TaskName      string
	TaskVersion   string
	HandlerConfig json.RawMessage
	Inputs        json.RawMessage
	Context       json.RawMessage
	// ParentResults are the results of the step's parents, by step name.
	ParentResults map[string]json.RawMessage
	CorrelationID string
	// Traceparent names the attempt's span when tracing is on (the task's
	// own traceparent otherwise).
	Traceparent    string
	LeaseExpiresAt time.Time
	// Timeout is the step's; Deadline is when the attempt must be done
	// (heartbeats cannot extend a lease past it).
	Timeout  time.Duration
	Deadline time.Time
}

// Claim leases up to req.Max runnable steps of req.Handlers to the worker.
// With req.Wait it returns as soon as work exists, or with no steps when the
// wait ends (or the replica stops).
func (s *Service) Claim(ctx context.Context, req ClaimRequest) ([]ClaimedStep, error) {
	if err := validateClaim(&req); err != nil {
		return nil, err
	}
	if s.stopping() {
		return nil, nil
	}
	if err := s.store.TouchWorker(ctx, req.WorkerID, req.Handlers, s.cfg.ReplicaID); err != nil {
		return nil, err
	}
	var w *waiter
	if req.Wait > 0 {
		w = s.hub.add(req.Handlers)
		defer s.hub.remove(w)
	}
	timer := time.NewTimer(req.Wait)
	defer timer.Stop()
	for {
		steps, err := s.claimOnce(ctx, req)
		if err != nil || len(steps) > 0 || w == nil {
			return steps, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.stop:
			return nil, nil
		case <-timer.C:
			return nil, nil
		case <-w.ch:
		}
	}
}

func validateClaim(req *ClaimRequest) error {
	var errs []registry.FieldError
	add := func(ptr, msg string) { errs = append(errs, registry.FieldError{Pointer: ptr, Message: msg}) }
	switch {
	case req.WorkerID == "":
		add("/worker_id", "is required: a name for this worker, unique among your workers (e.g. host-pid)")
	case len(req.WorkerID) > MaxWorkerIDLength:
		add("/worker_id", fmt.Sprintf("must be at most %d characters", MaxWorkerIDLength))
	case strings.IndexFunc(req.WorkerID, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		add("/worker_id", "must be printable characters")
	}
	if len(req.Handlers) == 0 {
		add("/handlers", `name at least one queue, e.g. ["remote:refunds"]`)
	}
	if len(req.Handlers) > MaxHandlers {
		add("/handlers", fmt.Sprintf("at most %d queues", MaxHandlers))
	}
	seen := map[string]bool{}
	var handlers []string
	for i, h := range req.Handlers {
		if err := registry.ValidateQueue(h); err != nil {
			add(fmt.Sprintf("/handlers/%d", i), err.Error())
		}
		if !seen[h] {
			seen[h] = true
			handlers = append(handlers, h)
		}
	}
	req.Handlers = handlers
	if req.Max == 0 {
		req.Max = 1
	}
	if req.Max < 1 || req.Max > MaxClaim {
		add("/max", fmt.Sprintf("must be from 1 to %d", MaxClaim))
	}
	if req.Wait < 0 || req.Wait > MaxWait {
		add("/wait_seconds", fmt.Sprintf("must be from 0 to %d", int(MaxWait.Seconds())))
	}
	if req.Lease == 0 {
		req.Lease = DefaultLease
	}
	if req.Lease < MinLease || req.Lease > MaxLease {
		add("/lease_seconds", fmt.Sprintf("must be from %d to %d", int(MinLease.Seconds()), int(MaxLease.Seconds())))
	}
	if len(errs) > 0 {
		return &registry.ValidationError{Errors: errs}
	}
	return nil
}

// claimOnce claims from each queue in turn, starting at a random one so
// that no queue starves the others, until req.Max steps are claimed.
func (s *Service) claimOnce(ctx context.Context, req ClaimRequest) ([]ClaimedStep, error) {
	var out []ClaimedStep
	start := rand.IntN(len(req.Handlers))
	for i := range req.Handlers {
		queue := req.Handlers[(start+i)%len(req.Handlers)]
		claimed, err := s.cfg.Steps.ClaimRemote(ctx, store.ClaimParams{Queue: queue, Limit: req.Max - len(out), Owner: req.WorkerID, Lease: req.Lease,
			Held: func(_ int, due time.Time) {
				// A rate-limited step was put back until its token is due:
				// waiting claims wake then, not at the fallback poll.
				if !due.IsZero() {
					s.hub.noteDue(due)
				}
			}})
		if err != nil {
			if len(out) > 0 {
				break // hand over what is claimed; the rest waits for the next claim
			}
			return nil, err
		}
		for _, c := range claimed {
			step, err := s.describe(ctx, c, req.Lease)
			if err != nil {
				// Without its template the worker cannot run it: give it
				// back at once, its attempt not counted.
				s.logger.WarnContext(ctx, "claimed a step whose template cannot be read; released",
					slog.String("step_id", c.StepID.String()), slog.String("error", err.Error()))
				ref := store.StepRef{StepID: c.StepID, TaskID: c.TaskID, Attempt: c.Attempt}
				if _, rerr := s.store.ReleaseSteps(ctx, req.WorkerID, []store.StepRef{ref}, s.channel); rerr != nil {
					s.logger.WarnContext(ctx, "release failed; the lease will expire", slog.String("error", rerr.Error()))
				}
				continue
			}
			out = append(out, step)
		}
		if len(out) >= req.Max {
			break
		}
	}
	return out, nil
}

// describe adds the template's part to a claimed step and caps its lease at
// the step's deadline.
func (s *Service) describe(ctx context.Context, c store.ClaimedStep, lease time.Duration) (ClaimedStep, error) {
	tmpl, err := s.stepTemplate(ctx, c.NamedTaskID, c.Name)
	if err != nil {
		return ClaimedStep{}, err
	}
	out := ClaimedStep{
		StepID: c.StepID, TaskID: c.TaskID, Attempt: c.Attempt, Handler: c.Handler, StepName: c.Name,
		Namespace: c.Namespace, TaskName: c.TaskName, TaskVersion: c.TaskVersion, HandlerConfig: tmpl.HandlerConfig,
		Inputs: c.Inputs, Context: c.Context, ParentResults: c.Parents, CorrelationID: c.CorrelationID,
		Traceparent: c.Traceparent, LeaseExpiresAt: c.LeaseExpiresAt, Timeout: time.Duration(tmpl.Timeout),
	}
	if out.ParentResults == nil {
		out.ParentResults = map[string]json.RawMessage{}
	}
	_, decorated := s.cfg.Steps.DecorateStep(ctx, handler.Step{TaskID: c.TaskID, StepID: c.StepID, Namespace: c.Namespace,
		TaskName: c.TaskName, TaskVersion: c.TaskVersion, StepName: c.Name, Attempt: c.Attempt,
		CorrelationID: c.CorrelationID, Traceparent: c.Traceparent})
	out.Traceparent = decorated.Traceparent
	if out.Timeout > 0 {
		claimedAt := c.LeaseExpiresAt.Add(-lease)
		out.Deadline = claimedAt.Add(out.Timeout)
		if out.Timeout < lease {
			l, err := s.store.RenewRemoteLease(ctx, c.StepID, c.Attempt, lease, out.Timeout)
			if err != nil {
				return ClaimedStep{}, err
			}
			out.LeaseExpiresAt = l.ExpiresAt
		}
	}
	return out, nil
}

func (s *Service) stepTemplate(ctx context.Context, namedTaskID int64, name string) (*registry.StepTemplate, error) {
	reg, err := s.cfg.Templates.ByID(ctx, namedTaskID)
	if err != nil {
		return nil, err
	}
	if reg == nil || reg.Template == nil {
		return nil, fmt.Errorf("template %d is not loaded", namedTaskID)
	}
	st, ok := reg.Template.Step(name)
	if !ok {
		return nil, fmt.Errorf("step %q is not in template %s", name, reg.Template.FullName())
	}
	return st, nil
}

// ErrStale means a call named an attempt that no longer holds the step.
var ErrStale = errors.New("stale attempt")

// StaleError is a heartbeat, completion or failure refused because the
// attempt no longer holds the step; nothing changed.
type StaleError struct {
	StepID  uuid.UUID
	Attempt int
	// Status and CurrentAttempt are the step's now.
	Status         string
	CurrentAttempt int
	// Cancelled: the step (or its task) was cancelled; the worker should
	// stop working on it.
	Cancelled bool
	// TimedOut: the step's timeout passed; its attempt is being taken back.
	TimedOut bool
}

func (e *StaleError) Error() string {
	switch {
	case e.Cancelled:
		return fmt.Sprintf("step %s was cancelled; stop working on it", e.StepID)
	case e.TimedOut:
		return fmt.Sprintf("step %s attempt %d passed its timeout; its lease cannot be extended", e.StepID, e.Attempt)
	case e.CurrentAttempt != e.Attempt:
		return fmt.Sprintf("attempt %d of step %s no longer holds it: the step is %s at attempt %d (its lease expired and it was taken back)",
			e.Attempt, e.StepID, e.Status, e.CurrentAttempt)
	default:
		return fmt.Sprintf("attempt %d of step %s no longer holds it: the step is %s", e.Attempt, e.StepID, e.Status)
	}
}

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// stale builds the StaleError for an attempt that was refused, from the
// step as it is now.
func (s *Service) stale(ctx context.Context, stepID uuid.UUID, attempt int) error {
	rs, err := s.store.RemoteStep(ctx, stepID)
	if err != nil {
		return err
	}
	return &StaleError{StepID: stepID, Attempt: attempt, Status: rs.Status, CurrentAttempt: rs.Attempts,
		Cancelled: rs.Status == "cancelled"}
}

// Heartbeat extends a claimed step's lease by lease (default 30 s), never
// past the step's deadline. A *StaleError says the worker must stop: the
// step was cancelled, timed out, or taken back.
func (s *Service) Heartbeat(ctx context.Context, stepID uuid.UUID, attempt int, lease time.Duration) (*store.Lease, error) {
	lease = cmp.Or(lease, DefaultLease)
	if lease < MinLease || lease > MaxLease {
		return nil, &registry.ValidationError{Errors: []registry.FieldError{{Pointer: "/lease_seconds",
			Message: fmt.Sprintf("must be from %d to %d", int(MinLease.Seconds()), int(MaxLease.Seconds()))}}}
	}
	rs, err := s.store.RemoteStep(ctx, stepID)
	if err != nil {
		return nil, err
	}
	var timeout time.Duration
	if tmpl, err := s.stepTemplate(ctx, rs.NamedTaskID, rs.Name); err == nil {
		timeout = time.Duration(tmpl.Timeout)
	}
	l, err := s.store.RenewRemoteLease(ctx, stepID, attempt, lease, timeout)
	if errors.Is(err, store.ErrLeaseLost) {
		return nil, s.stale(ctx, stepID, attempt)
	}
	if err != nil {
		return nil, err
	}
	if l.Expired {
		return nil, &StaleError{StepID: stepID, Attempt: attempt, Status: "in_progress", CurrentAttempt: attempt, TimedOut: true}
	}
	return l, nil
}

// Outcome is a step's state after a completion or failure.
type Outcome struct {
	StepID uuid.UUID
	TaskID uuid.UUID
	// Status is the step's: complete, pending (a retry is scheduled at
	// RetryAt) or error (failed for good).
	Status  string
	RetryAt *time.Time
	// TaskStatus is set when the task reached a final state.
	TaskStatus string
}

// ResultsTooLargeError is a completion whose results exceed the limit: the
// step was failed for good instead.
type ResultsTooLargeError struct {
	Size, Limit int
	Outcome     *Outcome
}

func (e *ResultsTooLargeError) Error() string {
	return fmt.Sprintf("results are %d bytes, above the limit of %d (TASKER_MAX_RESULT_BYTES); the step failed for good", e.Size, e.Limit)
}

// Complete records a claimed step's success with the custom business
// events the worker emitted during the attempt. Each event must be one the
// step's template declares (custom_events on the step or the template):
// otherwise a *registry.ValidationError refuses the whole call and nothing
// is written. The events are published with the step's completion, through
// the same path as those of the engine's own handlers (metrics, traces,
// webhooks). A *StaleError means the attempt no longer holds the step and
// nothing changed.
func (s *Service) Complete(ctx context.Context, stepID uuid.UUID, attempt int, results json.RawMessage, events ...handler.CustomEvent) (*Outcome, error) {
	rs, err := s.store.RemoteStep(ctx, stepID)
	if err != nil {
		return nil, err
	}
	if len(results) == 0 {
		results = json.RawMessage("null")
	}
	if !json.Valid(results) {
		return nil, &registry.ValidationError{Errors: []registry.FieldError{{Pointer: "/results", Message: "is not valid JSON"}}}
	}
	custom, err := s.customEvents(ctx, rs, events)
	if err != nil {
		return nil, err
	}
	if len(custom) > 0 {
		sc, err := s.scrubber(ctx, rs)
		if err != nil {
			return nil, err
		}
		custom = scrubCustom(sc, custom)
	}
	if len(results) > s.cfg.MaxResultBytes {
		tooLarge := &ResultsTooLargeError{Size: len(results), Limit: s.cfg.MaxResultBytes}
		out, err := s.fail(ctx, FailRequest{StepID: stepID, Attempt: attempt, Message: tooLarge.Error(), Retryable: false}, custom)
		if err != nil {
			return nil, err
		}
		tooLarge.Outcome = out
		return nil, tooLarge
	}
	res, err := s.cfg.Steps.FinishRemote(ctx, store.FinishParams{
		Owner:       rs.LeaseOwner,
		Completions: []store.Completion{{StepID: stepID, Attempt: attempt, Results: results}},
	}, custom)
	if err != nil {
		return nil, err
	}
	if len(res.Completed) == 0 {
		return nil, s.stale(ctx, stepID, attempt)
	}
	return outcome(rs, "complete", nil, res), nil
}

// customEvents checks a worker's events against the step's template, with
// the limits of a Go handler's (handler.EventRecorder), and returns them by
// step id for FinishRemote.
func (s *Service) customEvents(ctx context.Context, rs *store.RemoteStep, events []handler.CustomEvent) (map[uuid.UUID][]handler.CustomEvent, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if len(events) > handler.MaxCustomEvents {
		return nil, &registry.ValidationError{Errors: []registry.FieldError{{Pointer: "/events",
			Message: fmt.Sprintf("an attempt may emit at most %d events, got %d", handler.MaxCustomEvents, len(events))}}}
	}
	reg, err := s.cfg.Templates.ByID(ctx, rs.NamedTaskID)
	if err != nil {
		return nil, err
	}
	if reg == nil || reg.Template == nil {
		return nil, fmt.Errorf("template %d is not loaded", rs.NamedTaskID)
	}
	st, ok := reg.Template.Step(rs.Name)
	if !ok {
		return nil, fmt.Errorf("step %q is not in template %s", rs.Name, reg.Template.FullName())
	}
	recorder := handler.NewEventRecorder(st.CustomEvents, reg.Template.CustomEvents)
	var errs []registry.FieldError
	for i, ev := range events {
		if err := recorder.Emit(ev.Name, ev.Payload); err != nil {
			ptr := fmt.Sprintf("/events/%d", i)
			if errors.Is(err, handler.ErrUndeclaredEvent) {
				ptr += "/name"
				err = fmt.Errorf("%w of step %q (template %s)", err, rs.Name, reg.Template.FullName())
			} else {
				ptr += "/payload"
			}
			errs = append(errs, registry.FieldError{Pointer: ptr, Message: err.Error()})
		}
	}
	if len(errs) > 0 {
		return nil, &registry.ValidationError{Errors: errs}
	}
	return map[uuid.UUID][]handler.CustomEvent{rs.StepID: recorder.Events()}, nil
}

// FailRequest reports a claimed step's failure.
type FailRequest struct {
	StepID  uuid.UUID
	Attempt int
	// Message says what went wrong; Details, when set, is kept with it.
	Message string
	Details json.RawMessage
	// Retryable false fails the step for good.
	Retryable bool
	// RetryAfter, when set, replaces the step's backoff (capped at its max).
	RetryAfter time.Duration
}

// Fail records a claimed step's failure: it is retried after its backoff
// (or RetryAfter) while its retry budget lasts, and fails for good
// otherwise. A *StaleError means nothing changed.
func (s *Service) Fail(ctx context.Context, req FailRequest) (*Outcome, error) {
	return s.fail(ctx, req, nil)
}

func (s *Service) fail(ctx context.Context, req FailRequest, custom map[uuid.UUID][]handler.CustomEvent) (*Outcome, error) {
	rs, err := s.store.RemoteStep(ctx, req.StepID)
	if err != nil {
		return nil, err
	}
	b := s.cfg.Backoff
	if tmpl, err := s.stepTemplate(ctx, rs.NamedTaskID, rs.Name); err == nil {
		if tmpl.Backoff.Base > 0 {
			b.Base = time.Duration(tmpl.Backoff.Base)
		}
		if tmpl.Backoff.Max > 0 {
			b.Max = time.Duration(tmpl.Backoff.Max)
		}
	}
	body := map[string]any{"message": cmp.Or(req.Message, "the worker reported a failure"), "attempt": req.Attempt,
		"retryable": req.Retryable, "worker": rs.LeaseOwner}
	if req.RetryAfter > 0 {
		body["retry_after_seconds"] = req.RetryAfter.Seconds()
	}
	if len(req.Details) > 0 && string(req.Details) != "null" {
		body["details"] = req.Details
	}
	errDoc, err := json.Marshal(body)
	if err != nil {
		return nil, &registry.ValidationError{Errors: []registry.FieldError{{Pointer: "/error", Message: "is not valid JSON"}}}
	}
	sc, err := s.scrubber(ctx, rs)
	if err != nil {
		return nil, err
	}
	errDoc, custom = sc.JSON(errDoc), scrubCustom(sc, custom)
	res, err := s.cfg.Steps.FinishRemote(ctx, store.FinishParams{
		Owner: rs.LeaseOwner,
		Failures: []store.Failure{{StepID: req.StepID, Attempt: req.Attempt, Error: errDoc, Retryable: req.Retryable,
			Delay: b.Delay(req.Attempt, req.RetryAfter)}},
	}, custom)
	if err != nil {
		return nil, err
	}
	switch {
	case len(res.Retried) > 0:
		at := res.Retried[0].RetryAt
		s.hub.noteDue(at)
		return outcome(rs, "pending", &at, res), nil
	case len(res.Failed) > 0:
		return outcome(rs, "error", nil, res), nil
	}
	return nil, s.stale(ctx, req.StepID, req.Attempt)
}

func outcome(rs *store.RemoteStep, status string, retryAt *time.Time, res *store.FinishResult) *Outcome {
	out := &Outcome{StepID: rs.StepID, TaskID: rs.TaskID, Status: status, RetryAt: retryAt}
	for _, f := range res.Finalized {
		if f.TaskID == rs.TaskID {
			out.TaskStatus = f.Status
		}
	}
	return out
}

// Workers lists the workers seen within seenWithin (default 5 min), with the
// steps each holds.
func (s *Service) Workers(ctx context.Context, seenWithin time.Duration) ([]store.Worker, error) {
	return s.store.Workers(ctx, cmp.Or(seenWithin, DefaultSeenWithin), DefaultListLimit)
}
