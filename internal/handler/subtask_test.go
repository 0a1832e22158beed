package handler_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/handler"
)

func TestSubtaskConfigValidation(t *testing.T) {
	t.Parallel()
	k := handler.NewSubtask()
	for _, tc := range []struct{ config, wantErr string }{
		{`{"namespace_name": "payments", "name": "process_refund"}`, ""},
		{`{"namespace_name": "payments", "name": "process_refund", "version": "1.2.0",
		   "context": {"payment_id": "{{ .steps.validate.results.payment_id }}", "amount": "{{ .context.amount }}"}}`, ""},
		{`{"name": "process_refund"}`, `"namespace_name" is required`},
		{`{"namespace_name": "Payments", "name": "x"}`, `must match [a-z0-9_]+`},
		{`{"namespace_name": "payments"}`, `"name" is required`},
		{`{"namespace_name": "payments", "name": "x", "version": "v1"}`, "semantic version"},
		{`{"namespace_name": "payments", "name": "x", "context": [1]}`, `"context" must be an object`},
		{`{"namespace_name": "payments", "name": "x", "context": {"a": "{{ .x"}}`, "template at /a"},
		// The child's context is stored: no secrets in it.
		{`{"namespace_name": "payments", "name": "x", "context": {"t": "{{ secret \"TOKEN\" }}"}}`, `function "secret" not defined`},
		{`{"namespace_name": "payments", "name": "x", "ctx": {}}`, `unknown field "ctx"`},
	} {
		err := k.ValidateConfig(json.RawMessage(tc.config))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.config, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want it to contain %q", tc.config, err, tc.wantErr)
		}
	}
}

type fakeRunner struct{ got handler.SubtaskSpec }

func (f *fakeRunner) RunSubtask(_ context.Context, _ handler.Step, spec handler.SubtaskSpec) (json.RawMessage, error) {
	f.got = spec
	return nil, handler.ErrDetached
}

// The child's context is rendered from the parent's data; a lone action
// keeps its value's type.
func TestSubtaskRendersContext(t *testing.T) {
	t.Parallel()
	k := handler.NewSubtask()
	step := handler.Step{StepID: uuid.New(), Attempt: 2, Context: json.RawMessage(`{"amount": 1250, "tags": ["a"]}`),
		Parents: map[string]json.RawMessage{"validate": json.RawMessage(`{"payment_id": "pay_1"}`)},
		Config: json.RawMessage(`{"namespace_name": "payments", "name": "process_refund", "context":
			{"payment_id": "{{ .steps.validate.results.payment_id }}", "amount_cents": "{{ .context.amount }}",
			 "tags": "{{ .context.tags }}", "label": "try {{ .attempt }}", "fixed": true}}`)}
	if _, err := k.Handle(context.Background(), step); err == nil || !strings.Contains(err.Error(), "no engine bound") {
		t.Errorf("unbound: %v", err)
	}
	r := &fakeRunner{}
	k.Bind(r)
	if _, err := k.Handle(context.Background(), step); !errors.Is(err, handler.ErrDetached) {
		t.Fatalf("Handle: %v", err)
	}
	var got map[string]any
	if err := json.Unmarshal(r.got.Context, &got); err != nil {
		t.Fatal(err)
	}
	if r.got.Namespace != "payments" || r.got.Name != "process_refund" || got["payment_id"] != "pay_1" ||
		got["amount_cents"] != float64(1250) || got["label"] != "try 2" || got["fixed"] != true {
		t.Errorf("spec %+v, context %v", r.got, got)
	}
	if tags, ok := got["tags"].([]any); !ok || len(tags) != 1 || tags[0] != "a" {
		t.Errorf("tags: %v", got["tags"])
	}
	step.Config = json.RawMessage(`{"namespace_name": "payments", "name": "x", "context": {"id": "{{ .context.missing }}"}}`)
	if _, err := k.Handle(context.Background(), step); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing key: %v", err)
	} else if retryable, _ := handler.Classify(err); retryable {
		t.Errorf("a context that cannot render is permanent: %v", err)
	}
}
