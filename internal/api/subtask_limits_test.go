package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A subtask's results are held to TASKER_MAX_RESULT_BYTES like any step's:
// a child whose steps each fit, but whose results together do not, fails
// its parent step for good when it settles (the parent waits for it, so the
// check runs in the child's finalisation, not in a handler).
func TestSubtaskResultsAboveTheLimitFailTheParent(t *testing.T) {
	t.Parallel()
	a := startAPI(t, map[string]string{"TASKER_MAX_RESULT_BYTES": "1024"}, nil)
	filler := strings.Repeat("x", 600)
	a.registerYAML(`namespace_name: warehouse
name: pick
version: 1.0.0
step_templates:
  - {name: wait, handler: sleep, handler_config: {duration: 400ms}}
  - {name: a, handler: echo, inputs: {filler: ` + filler + `}, depends_on_step: wait}
  - {name: b, handler: echo, inputs: {filler: ` + filler + `}, depends_on_step: wait}
`)
	a.registerYAML(`namespace_name: shop
name: fulfil
version: 1.0.0
step_templates:
  - {name: pick, handler: subtask, handler_config: {namespace_name: warehouse, name: pick}, default_retry_limit: 3}
`)
	id := a.createTask("shop", "fulfil", map[string]any{})
	parent := a.waitTask(id, "error", 20*time.Second)
	steps, _ := parent["workflow_steps"].([]any)
	if len(steps) != 1 {
		t.Fatalf("workflow_steps: %v", parent["workflow_steps"])
	}
	step := steps[0].(map[string]any)
	raw, _ := json.Marshal(step["last_error"])
	var lastErr struct {
		Message   string `json:"message"`
		Retryable *bool  `json:"retryable"`
	}
	if err := json.Unmarshal(raw, &lastErr); err != nil {
		t.Fatalf("last_error %s: %v", raw, err)
	}
	if !strings.Contains(lastErr.Message, "above the limit of 1024 (TASKER_MAX_RESULT_BYTES)") ||
		lastErr.Retryable == nil || *lastErr.Retryable {
		t.Errorf("the parent step's error: %s", raw)
	}
	if step["attempts"] != float64(1) || step["results"] != nil {
		t.Errorf("failed for good at once, no results kept: attempts %v results %v", step["attempts"], step["results"])
	}
	children, _ := parent["child_tasks"].([]any)
	if len(children) != 1 || children[0].(map[string]any)["status"] != "complete" {
		t.Errorf("the child itself completed: %v", parent["child_tasks"])
	}
}
