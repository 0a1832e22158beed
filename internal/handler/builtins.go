package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Names of the built-in kinds.
const (
	KindNoop  = "noop"
	KindEcho  = "echo"
	KindSleep = "sleep"
	KindFail  = "fail"
)

// MaxSleep caps the sleep kind's duration: a step that waits longer is
// waiting for something, and should say what with a real kind.
const MaxSleep = 24 * time.Hour

// Builtins returns the kinds every taskerd has: noop, echo, sleep and fail.
// They need nothing outside the process, so tests, demos and fast
// workflows can be written with them alone.
func Builtins() []Kind {
	return []Kind{Noop{}, Echo{}, Sleep{}, Fail{}}
}

// Noop succeeds at once with a null result. Its handler_config must be empty.
type Noop struct{}

// Name is "noop".
func (Noop) Name() string { return KindNoop }

// ValidateConfig accepts only an empty config.
func (Noop) ValidateConfig(config json.RawMessage) error { return decodeConfig(config, &struct{}{}) }

// Handle returns null.
func (Noop) Handle(ctx context.Context, _ Step) (json.RawMessage, error) {
	return nil, ctx.Err()
}

// Echo succeeds with the step's inputs as its result. Its handler_config
// must be empty.
type Echo struct{}

// Name is "echo".
func (Echo) Name() string { return KindEcho }

// ValidateConfig accepts only an empty config.
func (Echo) ValidateConfig(config json.RawMessage) error { return decodeConfig(config, &struct{}{}) }

// Handle returns the step's inputs (null when it has none).
func (Echo) Handle(ctx context.Context, step Step) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return step.Inputs, nil
}

// Sleep waits for handler_config.duration (a Go duration such as "250ms"),
// then succeeds with {"slept": duration}. Cancelling the step ends the wait.
type Sleep struct{}

// SleepConfig is the sleep kind's handler_config.
type SleepConfig struct {
	// Duration is how long to wait; required, from 0 to MaxSleep.
	Duration string `json:"duration"`
}

// Name is "sleep".
func (Sleep) Name() string { return KindSleep }

// ValidateConfig requires a duration from 0 to MaxSleep.
func (Sleep) ValidateConfig(config json.RawMessage) error {
	_, err := parseSleepConfig(config)
	return err
}

func parseSleepConfig(config json.RawMessage) (time.Duration, error) {
	var c struct {
		Duration *string `json:"duration"`
	}
	if err := decodeConfig(config, &c); err != nil {
		return 0, err
	}
	if c.Duration == nil {
		return 0, errors.New(`"duration" is required, e.g. {"duration": "500ms"}`)
	}
	d, err := parseDuration("duration", *c.Duration)
	if err != nil {
		return 0, err
	}
	if d > MaxSleep {
		return 0, fmt.Errorf(`"duration" %s is longer than the maximum of %s`, d, MaxSleep)
	}
	return d, nil
}

// Handle waits, or returns ctx's error when the step is cancelled or times out.
func (Sleep) Handle(ctx context.Context, step Step) (json.RawMessage, error) {
	d, err := parseSleepConfig(step.Config)
	if err != nil {
		return nil, Permanent(fmt.Errorf("sleep: %w", err))
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
	}
	return json.Marshal(map[string]string{"slept": d.String()})
}

// Fail fails the first handler_config.failures attempts of a step and then
// succeeds with {"attempt": N}. With retry_after set, each failure asks for
// that delay; with permanent true, the first failure is final.
type Fail struct{}

// FailConfig is the fail kind's handler_config.
type FailConfig struct {
	// Failures is how many attempts fail before one succeeds; required, >= 0.
	Failures int `json:"failures"`
	// RetryAfter, a Go duration, is the delay each failure asks for.
	RetryAfter string `json:"retry_after,omitempty"`
	// Permanent makes the failure not retryable.
	Permanent bool `json:"permanent,omitempty"`
}

// Name is "fail".
func (Fail) Name() string { return KindFail }

// ValidateConfig requires failures >= 0 and a valid retry_after, and refuses
// retry_after together with permanent (a permanent failure is not retried).
func (Fail) ValidateConfig(config json.RawMessage) error {
	_, _, err := parseFailConfig(config)
	return err
}

func parseFailConfig(config json.RawMessage) (FailConfig, time.Duration, error) {
	var c struct {
		Failures   *int    `json:"failures"`
		RetryAfter *string `json:"retry_after"`
		Permanent  *bool   `json:"permanent"`
	}
	if err := decodeConfig(config, &c); err != nil {
		return FailConfig{}, 0, err
	}
	if c.Failures == nil {
		return FailConfig{}, 0, errors.New(`"failures" is required: how many attempts fail before one succeeds, e.g. {"failures": 2}`)
	}
	if *c.Failures < 0 {
		return FailConfig{}, 0, fmt.Errorf(`"failures" must be 0 or more, got %d`, *c.Failures)
	}
	out := FailConfig{Failures: *c.Failures}
	var retryAfter time.Duration
	if c.RetryAfter != nil {
		d, err := parseDuration("retry_after", *c.RetryAfter)
		if err != nil {
			return FailConfig{}, 0, err
		}
		out.RetryAfter, retryAfter = *c.RetryAfter, d
	}
	if c.Permanent != nil {
		out.Permanent = *c.Permanent
	}
	if out.Permanent && c.RetryAfter != nil {
		return FailConfig{}, 0, errors.New(`"retry_after" and "permanent" exclude each other: a permanent failure is not retried`)
	}
	return out, retryAfter, nil
}

// Handle fails while step.Attempt <= failures, then succeeds.
func (Fail) Handle(ctx context.Context, step Step) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, retryAfter, err := parseFailConfig(step.Config)
	if err != nil {
		return nil, Permanent(fmt.Errorf("fail: %w", err))
	}
	if step.Attempt <= c.Failures {
		err := fmt.Errorf("fail: attempt %d of the %d configured to fail", step.Attempt, c.Failures)
		switch {
		case c.Permanent:
			return nil, Permanent(err)
		case retryAfter > 0:
			return nil, RetryAfter(err, retryAfter)
		default:
			return nil, err
		}
	}
	return json.Marshal(map[string]int{"attempt": step.Attempt})
}

// decodeConfig strictly decodes a handler_config object into dst: null or
// empty means {}, unknown fields and wrong types are errors worded for the
// template's author.
func decodeConfig(config json.RawMessage, dst any) error {
	trimmed := bytes.TrimSpace(config)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		trimmed = []byte("{}")
	}
	if trimmed[0] != '{' {
		return errors.New("handler_config must be an object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("%q must be %s, got %s", te.Field, jsonType(te.Type.String()), te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.TrimPrefix(err.Error(), "json: unknown field ")
			return fmt.Errorf("unknown field %s in handler_config", field)
		default:
			return fmt.Errorf("handler_config: %w", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("handler_config: unexpected data after the object")
	}
	return nil
}

func jsonType(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "string":
		return "a string"
	case "int":
		return "a whole number"
	case "bool":
		return "true or false"
	default:
		return goType
	}
}

func parseDuration(field, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q must be a Go duration such as 500ms, 30s or 5m, got %q", field, s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q must not be negative, got %q", field, s)
	}
	return d, nil
}
