package handler_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/handler"
)

func TestBuiltinConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind    handler.Kind
		config  string
		wantErr string // "" means valid
	}{
		{handler.Noop{}, ``, ""},
		{handler.Noop{}, `null`, ""},
		{handler.Noop{}, `{}`, ""},
		{handler.Noop{}, `{"x": 1}`, `unknown field "x"`},
		{handler.Noop{}, `[1]`, "must be an object"},
		{handler.Echo{}, `{}`, ""},
		{handler.Echo{}, `{"inputs": {}}`, `unknown field "inputs"`},
		{handler.Sleep{}, `{"duration": "250ms"}`, ""},
		{handler.Sleep{}, `{"duration": "0s"}`, ""},
		{handler.Sleep{}, `{}`, `"duration" is required`},
		{handler.Sleep{}, `{"duration": 5}`, `"duration" must be a string, got number`},
		{handler.Sleep{}, `{"duration": "soon"}`, `must be a Go duration`},
		{handler.Sleep{}, `{"duration": "-1s"}`, `must not be negative`},
		{handler.Sleep{}, `{"duration": "25h"}`, `longer than the maximum`},
		{handler.Sleep{}, `{"duration": "1s", "jitter": true}`, `unknown field "jitter"`},
		{handler.Fail{}, `{"failures": 2}`, ""},
		{handler.Fail{}, `{"failures": 0}`, ""},
		{handler.Fail{}, `{"failures": 1, "retry_after": "2s"}`, ""},
		{handler.Fail{}, `{"failures": 1, "permanent": true}`, ""},
		{handler.Fail{}, `{}`, `"failures" is required`},
		{handler.Fail{}, `{"failures": -1}`, `must be 0 or more`},
		{handler.Fail{}, `{"failures": 1.5}`, `"failures" must be a whole number`},
		{handler.Fail{}, `{"failures": 1, "retry_after": "later"}`, `"retry_after" must be a Go duration`},
		{handler.Fail{}, `{"failures": 1, "permanent": "yes"}`, `"permanent" must be true or false`},
		{handler.Fail{}, `{"failures": 1, "permanent": true, "retry_after": "1s"}`, `exclude each other`},
	} {
		err := tc.kind.ValidateConfig(json.RawMessage(tc.config))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s %s: unexpected error %v", tc.kind.Name(), tc.config, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s %s: error %v, want one containing %q", tc.kind.Name(), tc.config, err, tc.wantErr)
		}
	}
}

func TestBuiltinsRegister(t *testing.T) {
	t.Parallel()
	k, err := handler.NewKinds(handler.Builtins()...)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(k.Names(), ","); got != "echo,fail,noop,sleep" {
		t.Fatalf("names %s", got)
	}
}

func TestBuiltinHandle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	if out, err := (handler.Noop{}).Handle(ctx, handler.Step{}); err != nil || out != nil {
		t.Errorf("noop: %s, %v", out, err)
	}
	if out, err := (handler.Echo{}).Handle(ctx, handler.Step{Inputs: json.RawMessage(`{"a":1}`)}); err != nil || string(out) != `{"a":1}` {
		t.Errorf("echo: %s, %v", out, err)
	}
	if out, err := (handler.Sleep{}).Handle(ctx, handler.Step{Config: json.RawMessage(`{"duration":"1ms"}`)}); err != nil || string(out) != `{"slept":"1ms"}` {
		t.Errorf("sleep: %s, %v", out, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := (handler.Sleep{}).Handle(cancelled, handler.Step{Config: json.RawMessage(`{"duration":"1h"}`)}); !errors.Is(err, context.Canceled) {
		t.Errorf("sleep must stop when cancelled: %v", err)
	}

	fail := handler.Fail{}
	cfg := json.RawMessage(`{"failures": 2}`)
	for attempt := 1; attempt <= 2; attempt++ {
		_, err := fail.Handle(ctx, handler.Step{Attempt: attempt, Config: cfg})
		if retryable, after := handler.Classify(err); err == nil || !retryable || after != 0 {
			t.Errorf("fail attempt %d: %v (retryable %v, after %s)", attempt, err, retryable, after)
		}
	}
	if out, err := fail.Handle(ctx, handler.Step{Attempt: 3, Config: cfg}); err != nil || string(out) != `{"attempt":3}` {
		t.Errorf("fail attempt 3 must succeed: %s, %v", out, err)
	}
	_, err := fail.Handle(ctx, handler.Step{Attempt: 1, Config: json.RawMessage(`{"failures": 1, "retry_after": "3s"}`)})
	if retryable, after := handler.Classify(err); !retryable || after != 3*time.Second {
		t.Errorf("retry_after: %v %v %s", err, retryable, after)
	}
	_, err = fail.Handle(ctx, handler.Step{Attempt: 1, Config: json.RawMessage(`{"failures": 5, "permanent": true}`)})
	if retryable, _ := handler.Classify(err); err == nil || retryable {
		t.Errorf("permanent: %v %v", err, retryable)
	}
}
