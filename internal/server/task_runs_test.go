package server_test

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A failed task retried by hand and finished again is finalised twice: each
// finalisation emits its own task span (the second linked to the first, in
// the same trace under the same parent), never one span id twice.
func TestRetriedTaskSpans(t *testing.T) {
	t.Parallel()
	r := startReplica(t)
	r.register(`namespace_name: shop
name: rerun
version: 1.0.0
step_templates:
  - {name: a, handler: fail, handler_config: {failures: 1, permanent: true}}
`)
	id := r.createTask("rerun", map[string]string{"traceparent": "00-7d3efb1b173fecfa8a1d6a5e8c7f0a11-1a2b3c4d5e6f7081-01"})
	r.waitTask(id, "error")
	if code, _, body := r.call("POST", "/tasks/"+id+"/retry", "", nil); code != 200 {
		t.Fatalf("retry: %d %s", code, body)
	}
	r.waitTask(id, "complete")

	var tasks []tracetest.SpanStub
	var spans []tracetest.SpanStub
	eventually(t, 10*time.Second, "two task spans", func() bool {
		spans, tasks = spans[:0], tasks[:0]
		for _, s := range r.spans.GetSpans() {
			for _, a := range s.Attributes {
				if a.Key == "tasker.task_id" && a.Value.AsString() == id {
					spans = append(spans, s)
					if s.Name == "task shop.rerun" {
						tasks = append(tasks, s)
					}
				}
			}
		}
		return len(tasks) >= 2
	})
	seen := map[string]string{}
	for _, s := range spans {
		sid := s.SpanContext.SpanID().String()
		if other, dup := seen[sid]; dup {
			t.Errorf("span id %s emitted twice: %s and %s", sid, other, s.Name)
		}
		seen[sid] = s.Name
	}
	if len(tasks) != 2 {
		t.Fatalf("%d task spans, want 2", len(tasks))
	}
	first, second := tasks[0], tasks[1]
	if first.EndTime.After(second.EndTime) {
		first, second = second, first
	}
	if first.Status.Code.String() != "Error" || second.Status.Code.String() == "Error" {
		t.Errorf("statuses: first %v, second %v", first.Status, second.Status)
	}
	if first.SpanContext.TraceID() != second.SpanContext.TraceID() || first.Parent.SpanID() != second.Parent.SpanID() ||
		first.Parent.SpanID().String() != "1a2b3c4d5e6f7081" {
		t.Errorf("the runs' spans: trace %s/%s, parent %s/%s", first.SpanContext.TraceID(), second.SpanContext.TraceID(),
			first.Parent.SpanID(), second.Parent.SpanID())
	}
	if len(second.Links) != 1 || second.Links[0].SpanContext.SpanID() != first.SpanContext.SpanID() {
		t.Errorf("the second run's span links to the first: %+v", second.Links)
	}
	run := ""
	for _, a := range second.Attributes {
		if a.Key == "tasker.run" {
			run = a.Value.String()
		}
	}
	if run != "2" {
		t.Errorf("tasker.run = %q, want 2", run)
	}
	// Both attempts of the step stay under the task's first span, whose id
	// was propagated while they ran.
	for _, s := range spans {
		if s.Name == "step a" && s.Parent.SpanID() != first.SpanContext.SpanID() {
			t.Errorf("step span under %s, want the task's first span %s", s.Parent.SpanID(), first.SpanContext.SpanID())
		}
	}
}
