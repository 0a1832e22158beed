package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// HandlerFunc runs one attempt of a step. It returns the step's results
// (encoded as JSON; nil is null) or an error: wrap it with Permanent to fail
// the step for good, or RetryAfter to ask for a delay. ctx ends when the
// step is cancelled, its lease is lost, its deadline passes, or the worker
// stops past its grace period.
type HandlerFunc func(ctx context.Context, step *Step) (results any, err error)

// Defaults of WorkerConfig.
const (
	DefaultLease       = 30 * time.Second
	DefaultWait        = 25 * time.Second
	DefaultStopTimeout = 30 * time.Second
)

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// ID names the worker in leases and GET /tasker/workers; default
	// host-pid.
	ID string
	// Handlers maps each queue served ("remote:refunds") to its handler;
	// at least one.
	Handlers map[string]HandlerFunc
	// Concurrency bounds the steps run at once; default 1.
	Concurrency int
	// Lease is how long a claimed step is held without a heartbeat;
	// heartbeats go every third of it. Default 30 s.
	Lease time.Duration
	// Wait is how long one claim long-polls; default 25 s (at most 30).
	Wait time.Duration
	// StopTimeout is how long Run's stop lets running handlers finish;
	// default 30 s.
	StopTimeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Worker claims steps and runs their handlers.
type Worker struct {
	client *Client
	cfg    WorkerConfig
	queues []string
	logger *slog.Logger
	slots  chan struct{}

	mu        sync.Mutex
	started   bool
	stopClaim context.CancelFunc // ends claiming
	stopRun   context.CancelFunc // cancels running handlers
	runCtx    context.Context
	claimDone chan struct{}
	running   sync.WaitGroup
	stopOnce  sync.Once
	stopped   chan struct{}
}

// NewWorker validates cfg.
func NewWorker(c *Client, cfg WorkerConfig) (*Worker, error) {
	if c == nil {
		return nil, errors.New("client: NewWorker needs a Client")
	}
	if len(cfg.Handlers) == 0 {
		return nil, errors.New(`client: WorkerConfig.Handlers needs at least one queue, e.g. "remote:refunds"`)
	}
	queues := make([]string, 0, len(cfg.Handlers))
	for q, h := range cfg.Handlers {
		if h == nil {
			return nil, fmt.Errorf("client: the handler of %q is nil", q)
		}
		queues = append(queues, q)
	}
	slices.Sort(queues)
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%d", cmp.Or(host, "worker"), os.Getpid())
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	cfg.Lease = cmp.Or(cfg.Lease, DefaultLease)
	cfg.Wait = cmp.Or(cfg.Wait, DefaultWait)
	cfg.StopTimeout = cmp.Or(cfg.StopTimeout, DefaultStopTimeout)
	if cfg.Lease < time.Second {
		return nil, errors.New("client: WorkerConfig.Lease must be at least 1s")
	}
	logger := cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "taskerd-worker"), slog.String("worker_id", cfg.ID))
	return &Worker{client: c, cfg: cfg, queues: queues, logger: logger, slots: make(chan struct{}, cfg.Concurrency),
		stopped: make(chan struct{})}, nil
}

// ID is the worker's name.
func (w *Worker) ID() string { return w.cfg.ID }

// Start claims and runs steps in the background; it returns at once.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return nil
	}
	w.started = true
	base := context.WithoutCancel(ctx)
	var claimCtx context.Context
	claimCtx, w.stopClaim = context.WithCancel(base)
	w.runCtx, w.stopRun = context.WithCancel(base)
	w.claimDone = make(chan struct{})
	go func() {
		defer close(w.claimDone)
		w.claimLoop(claimCtx)
	}()
	w.logger.InfoContext(ctx, "worker started", slog.Any("handlers", w.queues), slog.Int("concurrency", w.cfg.Concurrency))
	return nil
}

// Stop stops claiming and waits for running handlers until ctx ends; then
// it cancels them, and their steps are reported as failed (retryable) so
// they run again at once elsewhere. Safe twice and before Start.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if !started {
		return nil
	}
	w.stopOnce.Do(func() {
		defer close(w.stopped)
		w.stopClaim()
		<-w.claimDone
		done := make(chan struct{})
		go func() { w.running.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			w.stopRun()
			<-done
		}
		w.stopRun()
		w.logger.Info("worker stopped")
	})
	<-w.stopped
	return nil
}

// Run starts the worker and blocks until ctx ends, then stops it, letting
// running handlers finish for up to StopTimeout.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.StopTimeout)
	defer cancel()
	return w.Stop(stopCtx)
}

// claimLoop claims as many steps as there are free slots, long-polling.
func (w *Worker) claimLoop(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		// Wait for at least one free slot, then claim as many as are free.
		select {
		case <-ctx.Done():
			return
		case w.slots <- struct{}{}:
		}
		free := 1
	fill:
		for free < cap(w.slots) {
			select {
			case w.slots <- struct{}{}:
				free++
			default:
				break fill
			}
		}
		asked := time.Now()
		steps, err := w.client.Claim(ctx, ClaimRequest{WorkerID: w.cfg.ID, Handlers: w.queues, Max: free,
			Wait: w.cfg.Wait, Lease: w.cfg.Lease})
		for i := len(steps); i < free; i++ {
			<-w.slots // slots not used by this claim
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.logger.Warn("claim failed", slog.String("error", err.Error()), slog.Duration("retry_in", delay))
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, 5*time.Second)
			continue
		}
		if len(steps) == 0 && time.Since(asked) < w.cfg.Wait/2 {
			// An empty answer long before the wait ended: the server is
			// stopping. Do not spin against it.
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		for i := range steps {
			step := &steps[i]
			w.running.Add(1)
			go func() {
				defer w.running.Done()
				defer func() { <-w.slots }()
				w.run(step)
			}()
		}
	}
}

// run runs one step: heartbeats while its handler works, then reports.
func (w *Worker) run(step *Step) {
	logger := w.logger.With(slog.String("step_id", step.StepID), slog.Int("attempt", step.Attempt), slog.String("handler", step.Handler))
	handle := w.cfg.Handlers[step.Handler]
	ctx, cancel := context.WithCancelCause(w.runCtx)
	defer cancel(nil)
	if step.Deadline != nil {
		var cancelDeadline context.CancelFunc
		ctx, cancelDeadline = context.WithDeadlineCause(ctx, *step.Deadline, errors.New("the step's timeout passed"))
		defer cancelDeadline()
	}
	lost := make(chan error, 1) // why the step is no longer ours
	beatDone := make(chan struct{})
	go func() {
		defer close(beatDone)
		w.heartbeat(ctx, step, func(err error) {
			lost <- err
			cancel(err)
		}, logger)
	}()
	results, err := safeCall(ctx, handle, step)
	cancel(nil) // stops the heartbeats
	<-beatDone
	select {
	case why := <-lost:
		logger.Info("step abandoned: no longer ours", slog.String("reason", why.Error()))
		return
	default:
	}
	// Reports outlive a stop's cancellation: a finished step is worth
	// recording rather than re-running.
	reportCtx, cancelReport := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelReport()
	if err == nil {
		events := step.Events()
		w.report(reportCtx, logger, func(ctx context.Context) error {
			_, err := w.client.Complete(ctx, step.StepID, step.Attempt, results, events...)
			if IsEventError(err) {
				// The handler emitted an event its template does not
				// declare: a bug that another attempt would repeat.
				logger.Error("completion refused for its events; failing the step", slog.String("error", err.Error()))
				_, err = w.client.Fail(ctx, step.StepID, step.Attempt, Failure{Message: err.Error(), Permanent: true})
			}
			return err
		})
		return
	}
	f := Failure{Message: err.Error()}
	var he *handlerError
	if errors.As(err, &he) {
		f.Permanent, f.RetryAfter = he.permanent, he.retryAfter
	}
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && w.runCtx.Err() != nil {
		f.Message = "the worker stopped before the step finished: " + err.Error()
	}
	w.report(reportCtx, logger, func(ctx context.Context) error {
		_, err := w.client.Fail(ctx, step.StepID, step.Attempt, f)
		return err
	})
}

// heartbeat renews the lease every third of it until ctx ends; a stale or
// cancelled answer calls lose.
func (w *Worker) heartbeat(ctx context.Context, step *Step, lose func(error), logger *slog.Logger) {
	t := time.NewTicker(w.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := w.client.Heartbeat(ctx, step.StepID, step.Attempt, w.cfg.Lease)
		switch {
		case err == nil:
		case errors.Is(err, ErrStale), errors.Is(err, ErrNotFound):
			lose(err)
			return
		case ctx.Err() != nil:
			return
		default:
			// The server may be restarting: keep working and try again;
			// the lease covers two more tries.
			logger.Warn("heartbeat failed", slog.String("error", err.Error()))
		}
	}
}

// report sends a completion or failure, retrying transient errors.
func (w *Worker) report(ctx context.Context, logger *slog.Logger, send func(context.Context) error) {
	delay := 200 * time.Millisecond
	for {
		err := send(ctx)
		var apiErr *APIError
		switch {
		case err == nil:
			return
		case errors.Is(err, ErrStale):
			logger.Info("outcome refused: the step is no longer ours", slog.String("error", err.Error()))
			return
		case errors.As(err, &apiErr) && apiErr.Status < 500:
			logger.Error("outcome refused", slog.String("error", err.Error()))
			return
		}
		logger.Warn("reporting the outcome failed; retrying", slog.String("error", err.Error()))
		select {
		case <-ctx.Done():
			logger.Error("outcome not reported; the step runs again after its lease", slog.String("error", err.Error()))
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// safeCall runs a handler; a panic is a failed attempt, not a dead worker.
func safeCall(ctx context.Context, h HandlerFunc, step *Step) (results any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return h(ctx, step)
}

type handlerError struct {
	err        error
	permanent  bool
	retryAfter time.Duration
}

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

// Permanent marks a handler's error as not worth retrying: the step fails
// for good.
func Permanent(err error) error { return &handlerError{err: err, permanent: true} }

// RetryAfter asks for the next attempt after d rather than the step's backoff.
func RetryAfter(err error, d time.Duration) error { return &handlerError{err: err, retryAfter: d} }
