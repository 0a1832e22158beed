package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/Masterminds/semver/v3"
)

// KindSubtask is the name of the kind that runs another template as a
// child task.
const KindSubtask = "subtask"

// ErrDetached is what Handle returns when it handed the step's attempt over
// to something that will finish it later, outside the engine: the subtask
// kind's child task, whose finalisation completes or fails the step. The
// engine then records no outcome and frees the slot at once; the step holds
// no lease while it waits.
var ErrDetached = errors.New("the step waits for work outside the engine")

// SubtaskSpec is the child task a subtask step asks for.
type SubtaskSpec struct {
	Namespace string
	Name      string
	// Version "" means the highest registered.
	Version string
	// Context is the child's context, rendered from the step's template.
	Context json.RawMessage
}

// SubtaskRunner starts (or finds again) a step's child task and hands the
// step over to it; the engine implements it. It returns the step's results
// when the child already finished, or ErrDetached while it runs.
type SubtaskRunner interface {
	RunSubtask(ctx context.Context, step Step, spec SubtaskSpec) (json.RawMessage, error)
}

// Subtask runs another template, in any namespace, as a child task: the step
// creates the child once (a retry never creates a second), waits for it
// holding neither a slot nor a lease, and completes with the child's
// results in the transaction that finalises the child, or fails when the
// child ends in error. Cancelling the parent cancels the child.
type Subtask struct {
	mu     sync.RWMutex
	runner SubtaskRunner
}

// NewSubtask returns the subtask kind; Bind gives it its runner once the
// engine exists (the engine needs the kinds first). Unbound, it validates
// configs but cannot run steps.
func NewSubtask() *Subtask { return &Subtask{} }

// Bind sets the runner.
func (k *Subtask) Bind(r SubtaskRunner) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.runner = r
}

// Name is "subtask".
func (*Subtask) Name() string { return KindSubtask }

// SubtaskConfig is the subtask kind's handler_config.
type SubtaskConfig struct {
	// NamespaceName and Name name the child's template; required.
	NamespaceName string `json:"namespace_name"`
	Name          string `json:"name"`
	// Version is a semantic version; empty means the highest registered.
	Version string `json:"version,omitempty"`
	// Context is the child's context: a JSON object whose strings are
	// templates over the parent step's data. Default {}.
	Context json.RawMessage `json:"context,omitempty"`
}

var namePattern = regexp.MustCompile(`^[a-z0-9_]+$`)

func parseSubtaskConfig(config json.RawMessage) (*SubtaskConfig, error) {
	var c SubtaskConfig
	if err := decodeConfig(config, &c); err != nil {
		return nil, err
	}
	switch {
	case c.NamespaceName == "":
		return nil, errors.New(`"namespace_name" is required: the namespace of the child's template`)
	case !namePattern.MatchString(c.NamespaceName):
		return nil, fmt.Errorf(`"namespace_name" must match [a-z0-9_]+, got %q`, c.NamespaceName)
	case c.Name == "":
		return nil, errors.New(`"name" is required: the name of the child's template`)
	case !namePattern.MatchString(c.Name):
		return nil, fmt.Errorf(`"name" must match [a-z0-9_]+, got %q`, c.Name)
	}
	if c.Version != "" {
		if _, err := semver.StrictNewVersion(c.Version); err != nil {
			return nil, fmt.Errorf(`"version" must be a semantic version such as 1.2.0, got %q`, c.Version)
		}
	}
	if len(c.Context) > 0 && string(c.Context) != "null" {
		if c.Context[0] != '{' {
			return nil, errors.New(`"context" must be an object`)
		}
		// No secrets: the context is stored with the child task.
		if err := validateJSONTemplate(c.Context, false); err != nil {
			return nil, fmt.Errorf(`"context": %w`, err)
		}
	}
	return &c, nil
}

// ValidateConfig checks the child's template name and the context template.
// That the child's template exists is checked when the step runs: it may be
// registered after the parent's.
func (*Subtask) ValidateConfig(config json.RawMessage) error {
	_, err := parseSubtaskConfig(config)
	return err
}

// Handle renders the child's context and hands the step to the runner.
func (k *Subtask) Handle(ctx context.Context, step Step) (json.RawMessage, error) {
	c, err := parseSubtaskConfig(step.Config)
	if err != nil {
		return nil, Permanent(fmt.Errorf("subtask: %w", err))
	}
	k.mu.RLock()
	runner := k.runner
	k.mu.RUnlock()
	if runner == nil {
		return nil, errors.New("subtask: this replica cannot start subtasks (no engine bound)")
	}
	data, err := stepData(step)
	if err != nil {
		return nil, Permanent(fmt.Errorf("subtask: %w", err))
	}
	env := &renderEnv{data: data}
	childContext := json.RawMessage("{}")
	if len(c.Context) > 0 && string(c.Context) != "null" {
		if childContext, err = env.renderJSON(c.Context); err != nil {
			return nil, Permanent(fmt.Errorf("subtask: context: %w", err))
		}
	}
	return runner.RunSubtask(ctx, step, SubtaskSpec{Namespace: c.NamespaceName, Name: c.Name, Version: c.Version, Context: childContext})
}
