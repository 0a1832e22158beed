package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/pkg/client"
)

const packYAML = `namespace_name: shop
name: pack
version: 1.0.0
step_templates:
  - name: pack
    handler: "remote:packing"
    default_retry_limit: 3
    custom_events:
      - {name: parcel.packed, description: "value is the parcel's weight"}
`

// Events a handler emits go with the completion; one its template does not
// declare fails the step for good (another attempt would emit it again),
// with the server's reason.
func TestWorkerSendsEmittedEvents(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.post("/templates", "application/yaml", packYAML)
	e.worker(client.WorkerConfig{Lease: 5 * time.Second, Wait: time.Second,
		Handlers: map[string]client.HandlerFunc{"remote:packing": func(_ context.Context, s *client.Step) (any, error) {
			s.Emit("parcel.packed", map[string]any{"value": 2.5})
			if strings.Contains(string(s.Context), "undeclared") {
				s.Emit("parcel.lost", nil)
			}
			return map[string]any{"packed": true}, nil
		}}})
	create := func(ctx string) string {
		return e.post("/tasks", "application/json", `{"namespace": "shop", "name": "pack", "context": `+ctx+`}`)["task_id"].(string)
	}
	ok := e.wait(create(`{}`), "complete", 15*time.Second)
	if fmt.Sprint(step(ok, "pack")["results"]) != "map[packed:true]" {
		t.Errorf("results %v", step(ok, "pack")["results"])
	}
	bad := e.wait(create(`{"undeclared": true}`), "error", 15*time.Second)
	s := step(bad, "pack")
	if s["attempts"] != float64(1) || !strings.Contains(fmt.Sprint(s["last_error"]), `"parcel.lost"`) ||
		!strings.Contains(fmt.Sprint(s["last_error"]), "/events/1/name") {
		t.Errorf("the undeclared event's step: attempts %v, error %v", s["attempts"], s["last_error"])
	}
}

// Client.Complete refuses an undeclared event with an error IsEventError
// recognises, and records nothing.
func TestCompleteRefusesUndeclaredEvents(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.post("/templates", "application/yaml", packYAML)
	id := e.post("/tasks", "application/json", `{"namespace": "shop", "name": "pack"}`)["task_id"].(string)
	ctx := context.Background()
	steps, err := e.client.Claim(ctx, client.ClaimRequest{WorkerID: "w", Handlers: []string{"remote:packing"}, Wait: 5 * time.Second})
	if err != nil || len(steps) != 1 {
		t.Fatalf("claim: %v %v", steps, err)
	}
	_, err = e.client.Complete(ctx, steps[0].StepID, steps[0].Attempt, nil, client.Event{Name: "parcel.lost"})
	if !client.IsEventError(err) {
		t.Fatalf("an undeclared event: %v", err)
	}
	if status := e.task(id)["status"]; status != "in_progress" {
		t.Fatalf("a refused completion changes nothing: the task is %v", status)
	}
	out, err := e.client.Complete(ctx, steps[0].StepID, steps[0].Attempt, nil, client.Event{Name: "parcel.packed", Payload: map[string]any{"value": 1}})
	if err != nil || out.TaskStatus != "complete" {
		t.Fatalf("complete after the refusal: %+v %v", out, err)
	}
}
