package handler_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/handler"
)

func TestEventRecorder(t *testing.T) {
	t.Parallel()
	rec := handler.NewEventRecorder(json.RawMessage(`[{"name":"order.charged","description":"x"}]`),
		json.RawMessage(`[{"name":"order.shipped"}]`), nil)
	step := handler.Step{StepName: "charge", Emit: rec.Emit}
	if err := step.Publish("order.charged", map[string]any{"value": 12.5}); err != nil {
		t.Fatal(err)
	}
	if err := step.Publish("order.shipped", nil); err != nil {
		t.Fatal(err)
	}
	reserved := handler.NewEventRecorder(json.RawMessage(`[{"name":"task.completed"}]`))
	if err := reserved.Emit("task.completed", nil); !errors.Is(err, handler.ErrUndeclaredEvent) {
		t.Errorf("a custom event posing as taskerd's own: %v", err)
	}
	if err := step.Publish("order.refunded", nil); !errors.Is(err, handler.ErrUndeclaredEvent) {
		t.Errorf("undeclared: %v", err)
	}
	if err := rec.Emit("order.charged", json.RawMessage(`{"broken"`)); err == nil {
		t.Error("invalid JSON accepted")
	}
	if err := rec.Emit("order.charged", json.RawMessage(`{"note":"a\u0000b"}`)); err == nil || !strings.Contains(err.Error(), `\u0000`) {
		t.Fatalf("a payload PostgreSQL cannot store: %v", err)
	}
	if err := rec.Emit("order.charged", json.RawMessage(`"`+strings.Repeat("x", handler.MaxCustomEventPayload)+`"`)); err == nil {
		t.Error("an oversized payload accepted")
	}
	got := rec.Events()
	if len(got) != 2 || got[0].Name != "order.charged" || string(got[0].Payload) != `{"value":12.5}` || string(got[1].Payload) != "null" {
		t.Errorf("recorded %+v", got)
	}
	for range handler.MaxCustomEvents {
		_ = rec.Emit("order.shipped", nil)
	}
	if len(rec.Events()) != handler.MaxCustomEvents {
		t.Errorf("%d events kept, want at most %d", len(rec.Events()), handler.MaxCustomEvents)
	}
	if err := (handler.Step{StepName: "plain"}).Publish("order.charged", 1); !errors.Is(err, handler.ErrUndeclaredEvent) {
		t.Errorf("a step that declares nothing: %v", err)
	}
}
