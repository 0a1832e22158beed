package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Errors the registry returns, wrapped with what was asked for.
var (
	// ErrNotFound means no template (or no live version) matches.
	ErrNotFound = errors.New("template not found")
	// ErrConflict means a different template is registered under the same
	// namespace, name and version; register with replace to supersede it.
	ErrConflict = errors.New("template conflict")
	// ErrInUse means unfinished tasks use the template version being deleted.
	ErrInUse = errors.New("template in use")
)

// Defaults applied to a step when neither it nor the template's defaults say otherwise.
const (
	DefaultNamespace   = "default"
	DefaultVersion     = "0.1.0"
	DefaultRetryLimit  = 3
	DefaultTimeout     = 30 * time.Second
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 300 * time.Second
)

// RemotePrefix starts the handler of a step run by remote workers: the rest
// is the queue's name. Tasker steps (handler_class, no handler) become
// remote steps on "remote:<handler_class>".
const RemotePrefix = "remote:"

// maxQueueLength bounds a remote queue's name, prefix included.
const maxQueueLength = 200

// queuePattern is what follows RemotePrefix: Tasker's handler classes
// ("Payments::RefundHandler") fit, as do plain names ("refunds").
var queuePattern = regexp.MustCompile(`^[A-Za-z0-9_.:/-]+$`)

// ValidateQueue checks a remote queue's name, "remote:<name>". Queue names
// are global: workers of every namespace claim from them by name.
func ValidateQueue(queue string) error {
	name, ok := strings.CutPrefix(queue, RemotePrefix)
	switch {
	case !ok:
		return fmt.Errorf("remote queue %q must start with %q", queue, RemotePrefix)
	case name == "":
		return fmt.Errorf("remote queue %q needs a name after %q, e.g. remote:refunds", queue, RemotePrefix)
	case len(queue) > maxQueueLength:
		return fmt.Errorf("remote queue %q is longer than %d characters", queue, maxQueueLength)
	case !queuePattern.MatchString(name):
		return fmt.Errorf("remote queue %q may hold only letters, digits and _ . : / -", queue)
	}
	return nil
}

// Template is the normalised template: defaults and the replica's
// environment overlay applied, every step with effective values.
type Template struct {
	NamespaceName string          `json:"namespace_name"`
	Name          string          `json:"name"`
	Version       string          `json:"version"`
	Description   string          `json:"description,omitempty"`
	Schema        json.RawMessage `json:"schema,omitempty"`
	// Defaults are the effective template-wide defaults.
	Defaults      Defaults       `json:"defaults"`
	StepTemplates []StepTemplate `json:"step_templates"`
	// Environment is the overlay that was applied ("" for none).
	Environment string `json:"environment,omitempty"`
	// Environments lists the overlays the template declares.
	Environments []string `json:"environments,omitempty"`
	// Concurrency caps the template's tasks in progress at once (per key).
	Concurrency *Concurrency `json:"concurrency,omitempty"`

	// Tasker's fields, kept as written.
	TaskHandlerClass       string          `json:"task_handler_class,omitempty"`
	ModuleNamespace        string          `json:"module_namespace,omitempty"`
	DefaultDependentSystem string          `json:"default_dependent_system,omitempty"`
	NamedSteps             []string        `json:"named_steps,omitempty"`
	HandlerConfig          json.RawMessage `json:"handler_config,omitempty"`
	CustomEvents           json.RawMessage `json:"custom_events,omitempty"`
}

// FullName is "namespace.name@version", as Tasker writes it.
func (t *Template) FullName() string {
	return FullName(t.NamespaceName, t.Name, t.Version)
}

// Step returns the step template named name.
func (t *Template) Step(name string) (*StepTemplate, bool) {
	for i := range t.StepTemplates {
		if t.StepTemplates[i].Name == name {
			return &t.StepTemplates[i], true
		}
	}
	return nil, false
}

// FullName formats "namespace.name@version".
func FullName(namespace, name, version string) string {
	return namespace + "." + name + "@" + version
}

// Defaults are a template's defaults for its steps.
type Defaults struct {
	RetryLimit int      `json:"retry_limit"`
	Timeout    Duration `json:"timeout"`
	Backoff    Backoff  `json:"backoff"`
}

// StepTemplate is one step with its effective settings.
type StepTemplate struct {
	Name          string          `json:"name"`
	Handler       string          `json:"handler"` // kind name, or "remote:<queue>"
	HandlerConfig json.RawMessage `json:"handler_config,omitempty"`
	Inputs        json.RawMessage `json:"inputs,omitempty"`
	// DependsOn is the union of depends_on_step and depends_on_steps, in
	// the order written, without repeats.
	DependsOn  []string `json:"depends_on_steps"`
	Retryable  bool     `json:"default_retryable"`
	RetryLimit int      `json:"default_retry_limit"` // total attempts allowed
	// Timeout is the step's, else handler_config.timeout_seconds, else
	// defaults.timeout, else 30 s.
	Timeout Duration `json:"timeout"`
	// Backoff is the step's, else defaults.backoff, else base 1 s, max 300 s.
	Backoff   Backoff `json:"backoff"`
	Skippable bool    `json:"skippable"`
	// Concurrency caps this step's runs at once (per key), across replicas.
	Concurrency *Concurrency `json:"concurrency,omitempty"`
	// RateLimit spaces the starts of the steps sharing its bucket.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// Tasker's fields, kept as written.
	Description     string          `json:"description,omitempty"`
	HandlerClass    string          `json:"handler_class,omitempty"`
	DependentSystem string          `json:"dependent_system,omitempty"`
	CustomEvents    json.RawMessage `json:"custom_events,omitempty"`
}

// IsRemote reports whether remote workers run the step.
func (s *StepTemplate) IsRemote() bool { return strings.HasPrefix(s.Handler, RemotePrefix) }

// Queue is where the step is claimed from: "" for the engine's own kinds,
// the handler ("remote:<name>") for remote steps.
func (s *StepTemplate) Queue() string {
	if s.IsRemote() {
		return s.Handler
	}
	return ""
}

// Backoff bounds the delay between a step's attempts.
type Backoff struct {
	Base Duration `json:"base"`
	Max  Duration `json:"max"`
}

// Duration is a time.Duration written in JSON and YAML as a Go duration
// string ("500ms", "30s", "5m").
type Duration time.Duration

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a Go duration such as 500ms, 30s or 5m", s)
	}
	*d = Duration(v)
	return nil
}

// FieldError is one problem in a document.
type FieldError struct {
	// Pointer is an RFC 6901 JSON pointer into the validated document
	// ("" for the document itself).
	Pointer string `json:"pointer"`
	// Message says what is wrong, in words the document's author can act on.
	Message string `json:"message"`
}

func (e FieldError) String() string {
	if e.Pointer == "" {
		return e.Message
	}
	return e.Pointer + ": " + e.Message
}

// ValidationError lists every problem found in a template; registration
// returns it (wrapped) and the API answers 422 with the list.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Errors) == 1 {
		return "invalid template: " + e.Errors[0].String()
	}
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.String()
	}
	return fmt.Sprintf("invalid template: %d errors: %s", len(e.Errors), strings.Join(parts, "; "))
}

// ConflictError is ErrConflict with the two contents that differ.
type ConflictError struct {
	Namespace, Name, Version string
	// RegisteredHash and NewHash are the content hashes of the registered
	// template and of the one offered.
	RegisteredHash, NewHash string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s is already registered with different content (registered %s, offered %s); "+
		"register it under a new version, or replace it with replace=true",
		FullName(e.Namespace, e.Name, e.Version), shortHash(e.RegisteredHash), shortHash(e.NewHash))
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

func shortHash(h string) string {
	if len(h) > 12 {
		return "sha256:" + h[:12]
	}
	return "sha256:" + h
}
