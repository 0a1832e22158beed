package registry

import "encoding/json"

// The types below are a template document as its author writes it. Every
// field is optional at this level (pointers, so "absent" differs from
// "zero"); the validator decides what is required. They double as the
// canonical form that is stored and hashed: the document with its
// defaults for namespace and version filled in, dependencies folded into
// depends_on_steps, durations and embedded JSON in one spelling.

type docTemplate struct {
	NamespaceName *string                   `json:"namespace_name,omitempty"`
	Name          *string                   `json:"name,omitempty"`
	Version       *string                   `json:"version,omitempty"`
	Description   *string                   `json:"description,omitempty"`
	Schema        json.RawMessage           `json:"schema,omitempty"`
	Defaults      *docDefaults              `json:"defaults,omitempty"`
	StepTemplates []docStep                 `json:"step_templates"`
	Environments  map[string]docEnvironment `json:"environments,omitempty"`
	Concurrency   *docConcurrency           `json:"concurrency,omitempty"`

	// Tasker's task-level fields: accepted and kept.
	TaskHandlerClass       *string         `json:"task_handler_class,omitempty"`
	ModuleNamespace        *string         `json:"module_namespace,omitempty"`
	DefaultDependentSystem *string         `json:"default_dependent_system,omitempty"`
	NamedSteps             []string        `json:"named_steps,omitempty"`
	HandlerConfig          json.RawMessage `json:"handler_config,omitempty"`
	CustomEvents           json.RawMessage `json:"custom_events,omitempty"`
}

type docDefaults struct {
	RetryLimit *int        `json:"retry_limit,omitempty"`
	Timeout    *string     `json:"timeout,omitempty"`
	Backoff    *docBackoff `json:"backoff,omitempty"`
}

type docBackoff struct {
	Base *string `json:"base,omitempty"`
	Max  *string `json:"max,omitempty"`
}

type docStep struct {
	Name           *string         `json:"name,omitempty"`
	Handler        *string         `json:"handler,omitempty"`
	HandlerConfig  json.RawMessage `json:"handler_config,omitempty"`
	Inputs         json.RawMessage `json:"inputs,omitempty"`
	DependsOnStep  *string         `json:"depends_on_step,omitempty"`
	DependsOnSteps []string        `json:"depends_on_steps,omitempty"`
	Retryable      *bool           `json:"default_retryable,omitempty"`
	RetryLimit     *int            `json:"default_retry_limit,omitempty"`
	Timeout        *string         `json:"timeout,omitempty"`
	Backoff        *docBackoff     `json:"backoff,omitempty"`
	Skippable      *bool           `json:"skippable,omitempty"`
	Concurrency    *docConcurrency `json:"concurrency,omitempty"`
	RateLimit      *docRateLimit   `json:"rate_limit,omitempty"`

	// Tasker's step fields: accepted and kept.
	Description     *string         `json:"description,omitempty"`
	HandlerClass    *string         `json:"handler_class,omitempty"`
	DependentSystem *string         `json:"dependent_system,omitempty"`
	CustomEvents    json.RawMessage `json:"custom_events,omitempty"`
}

// docEnvironment is an overlay: each step names a step of the template and
// sets the fields that differ in that environment.
type docEnvironment struct {
	StepTemplates []docStep `json:"step_templates"`
}
