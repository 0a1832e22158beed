// Package client talks to taskerd's remote-worker API: claim steps of
// "remote:<name>" queues, keep them with heartbeats, and report their
// outcomes. Worker runs handlers with bounded concurrency, heartbeats and
// a graceful stop; Client is the API underneath, for programs that want to
// drive it themselves.
//
// A claimed step's attempt number is its fencing token: when a worker loses
// a step (it stopped heartbeating and the step was claimed again, or the
// task was cancelled), its late calls answer ErrStale and change nothing.
package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config configures a Client.
type Config struct {
	// BaseURL is the taskerd server, e.g. "http://localhost:8080"; the API's
	// /tasker prefix is added. Required.
	BaseURL string
	// HTTPClient sends the requests; nil means a client without an overall
	// timeout (claims long-poll; each call is bounded by its context).
	HTTPClient *http.Client
	// Header is added to every request (an Authorization header, say).
	Header http.Header
}

// Client calls the remote-worker API. It is safe for concurrent use.
type Client struct {
	base   string
	http   *http.Client
	header http.Header
}

// New validates cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: BaseURL must be an http(s) URL such as http://localhost:8080, got %q", cfg.BaseURL)
	}
	base := u.String()
	if !strings.HasSuffix(base, "/tasker") {
		base += "/tasker"
	}
	return &Client{base: base, http: cmp.Or(cfg.HTTPClient, &http.Client{}), header: cfg.Header.Clone()}, nil
}

// Errors a call may match with errors.Is.
var (
	// ErrStale: the attempt no longer holds the step (lease lost, step
	// claimed again, timed out, cancelled or finished). Nothing changed;
	// stop working on the step.
	ErrStale = errors.New("the attempt no longer holds the step")
	// ErrCancelled: the step or its task was cancelled (also ErrStale).
	ErrCancelled = errors.New("the step was cancelled")
	// ErrNotFound: no remote step has this id.
	ErrNotFound = errors.New("no such remote step")
)

// APIError is an answer other than success, with the server's problem
// document (RFC 9457).
type APIError struct {
	Status int
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	// Cancelled and TimedOut qualify a 409 on a step.
	Cancelled bool `json:"cancelled"`
	TimedOut  bool `json:"timed_out"`
	// Errors lists invalid fields of a 422.
	Errors []struct {
		Pointer string `json:"pointer"`
		Detail  string `json:"detail"`
	} `json:"errors"`
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("taskerd: %d %s", e.Status, cmp.Or(e.Title, http.StatusText(e.Status)))
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	for _, fe := range e.Errors {
		msg += fmt.Sprintf("; %s: %s", fe.Pointer, fe.Detail)
	}
	return msg
}

// Is matches ErrStale (409), ErrCancelled (409 cancelled) and ErrNotFound (404).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrStale:
		return e.Status == http.StatusConflict
	case ErrCancelled:
		return e.Status == http.StatusConflict && e.Cancelled
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	}
	return false
}

// IsEventError reports a completion refused for its events: undeclared
// names, payloads too large, too many events.
func IsEventError(err error) bool {
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnprocessableEntity {
		return false
	}
	for _, fe := range apiErr.Errors {
		if fe.Pointer == "/events" || strings.HasPrefix(fe.Pointer, "/events/") {
			return true
		}
	}
	return false
}

// do sends a JSON request and decodes a JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("client: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		apiErr := &APIError{Status: resp.StatusCode}
		_ = json.Unmarshal(raw, apiErr)
		apiErr.Status = resp.StatusCode
		return apiErr
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("client: %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// ClaimRequest asks for steps.
type ClaimRequest struct {
	// WorkerID names the worker; required.
	WorkerID string
	// Handlers are the queues served, e.g. "remote:refunds"; required.
	Handlers []string
	// Max is how many steps at most (default 1).
	Max int
	// Wait long-polls up to this long (at most 30 s) when there is no work.
	Wait time.Duration
	// Lease is how long the steps are held without a heartbeat (default 30 s).
	Lease time.Duration
}

// Step is a claimed step.
type Step struct {
	StepID string `json:"step_id"`
	TaskID string `json:"task_id"`
	// Attempt is the fencing token of Heartbeat, Complete and Fail.
	Attempt       int             `json:"attempt"`
	Handler       string          `json:"handler"`
	StepName      string          `json:"step_name"`
	Namespace     string          `json:"namespace"`
	TaskName      string          `json:"task_name"`
	TaskVersion   string          `json:"task_version"`
	HandlerConfig json.RawMessage `json:"handler_config"`
	Inputs        json.RawMessage `json:"inputs"`
	// Context is the task's context.
	Context json.RawMessage `json:"context"`
	// ParentResults are the results of the step's parents, by step name.
	ParentResults map[string]json.RawMessage `json:"parent_results"`
	CorrelationID string                     `json:"correlation_id"`
	// Traceparent (W3C) names the attempt's span in the task's trace;
	// extract it with an OpenTelemetry propagator so the handler's spans
	// nest under the step.
	Traceparent    string    `json:"traceparent"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	TimeoutSeconds float64   `json:"timeout_seconds"`
	// Deadline is when the attempt must be done; heartbeats cannot extend
	// the lease past it. Nil when the step has no timeout.
	Deadline *time.Time `json:"deadline"`

	mu     sync.Mutex
	events []Event // emitted by the handler (Emit), sent with the completion
}

// Event is a custom business event, declared in the step template's
// custom_events, that an attempt emits. A numeric "value" in its payload
// is observed by the tasker_custom_event_value histogram (revenue per
// order, rows imported, …).
type Event struct {
	Name string `json:"name"`
	// Payload is encoded as JSON; nil is null.
	Payload any `json:"payload,omitempty"`
}

// Emit records a custom business event; a Worker sends the events with the
// step's completion (they are dropped if the attempt fails). The server
// refuses names the template does not declare: the Worker then fails the
// step for good, saying which. Safe for concurrent use.
func (s *Step) Emit(name string, payload any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, Event{Name: name, Payload: payload})
}

// Events returns the events emitted so far.
func (s *Step) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// Claim leases up to req.Max steps; with req.Wait it returns as soon as
// there is work, or with none when the wait ends.
func (c *Client) Claim(ctx context.Context, req ClaimRequest) ([]Step, error) {
	body := map[string]any{"worker_id": req.WorkerID, "handlers": req.Handlers}
	if req.Max > 0 {
		body["max"] = req.Max
	}
	if req.Wait > 0 {
		body["wait_seconds"] = req.Wait.Seconds()
	}
	if req.Lease > 0 {
		body["lease_seconds"] = req.Lease.Seconds()
	}
	var out struct {
		Steps []Step `json:"steps"`
	}
	if err := c.do(ctx, http.MethodPost, "/workers/claim", body, &out); err != nil {
		return nil, err
	}
	return out.Steps, nil
}

// Heartbeat extends a step's lease by lease (0: the server's default) and
// returns when it now expires. ErrCancelled (an ErrStale) means stop.
func (c *Client) Heartbeat(ctx context.Context, stepID string, attempt int, lease time.Duration) (time.Time, error) {
	body := map[string]any{"attempt": attempt}
	if lease > 0 {
		body["lease_seconds"] = lease.Seconds()
	}
	var out struct {
		LeaseExpiresAt time.Time `json:"lease_expires_at"`
	}
	err := c.do(ctx, http.MethodPost, "/steps/"+url.PathEscape(stepID)+"/heartbeat", body, &out)
	return out.LeaseExpiresAt, err
}

// Outcome is a step's state after Complete or Fail.
type Outcome struct {
	StepID string `json:"step_id"`
	TaskID string `json:"task_id"`
	// Status is complete, pending (a retry at RetryAt) or error (failed for good).
	Status  string     `json:"status"`
	RetryAt *time.Time `json:"retry_at"`
	// TaskStatus is set when the task reached a final state.
	TaskStatus string `json:"task_status"`
}

// Complete reports a step's success; results are encoded as JSON. events
// are the custom business events the attempt emitted; a name the step's
// template does not declare refuses the whole call (an *APIError 422 whose
// Errors point into /events, see IsEventError) and nothing is recorded.
func (c *Client) Complete(ctx context.Context, stepID string, attempt int, results any, events ...Event) (*Outcome, error) {
	raw, err := json.Marshal(results)
	if err != nil {
		return nil, fmt.Errorf("client: encode results: %w", err)
	}
	body := map[string]any{"attempt": attempt, "results": json.RawMessage(raw)}
	if len(events) > 0 {
		body["events"] = events
	}
	var out Outcome
	err = c.do(ctx, http.MethodPost, "/steps/"+url.PathEscape(stepID)+"/complete", body, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Failure describes a failed attempt.
type Failure struct {
	// Message says what went wrong.
	Message string
	// Details, when set, is kept with the message.
	Details any
	// Permanent fails the step for good; otherwise it is retried while its
	// retry budget lasts.
	Permanent bool
	// RetryAfter replaces the step's backoff before the next attempt.
	RetryAfter time.Duration
}

// Fail reports a step's failure.
func (c *Client) Fail(ctx context.Context, stepID string, attempt int, f Failure) (*Outcome, error) {
	var errBody any = f.Message
	if f.Details != nil {
		errBody = map[string]any{"message": f.Message, "details": f.Details}
	}
	body := map[string]any{"attempt": attempt, "error": errBody, "retryable": !f.Permanent}
	if f.RetryAfter > 0 {
		body["retry_after_seconds"] = f.RetryAfter.Seconds()
	}
	var out Outcome
	if err := c.do(ctx, http.MethodPost, "/steps/"+url.PathEscape(stepID)+"/fail", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WorkerInfo is a worker the server saw lately.
type WorkerInfo struct {
	WorkerID    string    `json:"worker_id"`
	Handlers    []string  `json:"handlers"`
	FirstSeenAt time.Time `json:"first_seen_at"`
	LastSeenAt  time.Time `json:"last_seen_at"`
	LastReplica string    `json:"last_replica"`
	InFlight    []struct {
		StepID         string    `json:"step_id"`
		TaskID         string    `json:"task_id"`
		Attempt        int       `json:"attempt"`
		Handler        string    `json:"handler"`
		StepName       string    `json:"step_name"`
		ClaimedAt      time.Time `json:"claimed_at"`
		LeaseExpiresAt time.Time `json:"lease_expires_at"`
	} `json:"in_flight"`
}

// Workers lists the workers seen lately and the steps each holds.
func (c *Client) Workers(ctx context.Context) ([]WorkerInfo, error) {
	var out struct {
		Workers []WorkerInfo `json:"workers"`
	}
	if err := c.do(ctx, http.MethodGet, "/workers", nil, &out); err != nil {
		return nil, err
	}
	return out.Workers, nil
}
