package events

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
)

// Markdown renders the catalog as docs/events.md (make events-doc).
func Markdown() []byte {
	var b bytes.Buffer
	b.WriteString(`<!-- Generated from internal/events by ` + "`make events-doc`" + `; do not edit. -->
# Events

taskerd emits an event for every state change of a task or a step, for a few
moments of a step's life that change no state, and for changes to the template
registry. Handlers add **custom events** that their templates declare.
Events reach, in every replica:

- the in-process bus, whose subscribers turn them into Prometheus metrics,
  OpenTelemetry spans and log lines, each with a bounded buffer
  (` + "`TASKER_EVENT_BUFFER`" + `): a subscriber that falls behind loses events, counted in
  ` + "`tasker_events_dropped_total{subscriber}`" + ` and logged, and never slows the engine;
- webhooks (` + "`POST /tasker/webhooks`" + `), through an outbox table. A *transactional*
  event's outbox row is written in the transaction of the state change
  itself, so no delivery is lost to a crash; the others record no state change
  and are written just after they happen. Deliveries are retried with backoff
  and are at least once: deduplicate by ` + "`id`" + `.

` + "`GET /tasker/events`" + ` serves this catalog, with each payload's JSON Schema and the
custom events of the registered templates.

## Envelope

A webhook delivery's body is one event:

`)
	writeFields(&b, SchemaOf(reflect.TypeOf(Envelope{})))
	b.WriteString(`
Each delivery is signed: ` + "`X-Tasker-Signature: t=<unix seconds>,v1=<hex>`" + `, where
the hex is the HMAC-SHA256, keyed with the webhook's secret, of ` + "`<t>.<body>`" + `.
Receivers recompute it over the raw body and reject old ` + "`t`" + ` values to refuse
replays. ` + "`X-Tasker-Event`" + `, ` + "`X-Tasker-Event-ID`" + `, ` + "`X-Tasker-Delivery`" + ` and ` + "`X-Correlation-ID`" + `
are set too.
`)
	payloads := map[Category]any{CategoryTask: TaskPayload{}, CategoryStep: StepPayload{},
		CategoryWorkflow: WorkflowPayload{}, CategoryHandler: HandlerPayload{}}
	for _, cat := range Categories() {
		fmt.Fprintf(&b, "\n## %s events\n\n| event | transactional | when |\n|---|---|---|\n", title(cat))
		for _, d := range catalog {
			if d.Category != cat {
				continue
			}
			tx := "no"
			if d.Transactional {
				tx = "yes"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", d.Name, tx, d.Description)
		}
		fmt.Fprintf(&b, "\nPayload (`data`) of %s events:\n\n", cat)
		writeFields(&b, SchemaOf(reflect.TypeOf(payloads[cat])))
	}
	b.WriteString(`
## Custom events

A template declares business events per step, or for every step, as Tasker
does:

` + "```yaml" + `
step_templates:
  - name: charge
    handler: http
    custom_events:
      - {name: order.charged, description: "A card was charged; value is the amount"}
` + "```" + `

A handler emits them with its attempt: Go handlers through
` + "`handler.Step.Publish(name, payload)`" + `, remote workers in the ` + "`events`" + ` of their
complete call (` + "`[{name, payload}]`" + `; pkg/client's ` + "`Step.Emit`" + `), HTTP steps through the
response field their config's ` + "`events_field`" + ` names. An undeclared name is
refused: a Go handler gets ` + "`handler.ErrUndeclaredEvent`" + `, a remote worker's complete call
answers 422 and records nothing, an HTTP step fails for good. Custom events are published with the attempt's outcome (and written
to the outbox in its transaction), count in
` + "`tasker_custom_events_total{namespace,task,event}`" + ` and, when the payload has a
numeric ` + "`value`" + `, are observed by the histogram
` + "`tasker_custom_event_value{namespace,task,event}`" + ` (revenue per order, rows per import).
Webhooks select them by name or prefix (` + "`order.*`" + `).

Payload (` + "`data`" + `) of custom events:

`)
	writeFields(&b, SchemaOf(reflect.TypeOf(CustomPayload{})))
	return b.Bytes()
}

func writeFields(b *bytes.Buffer, s *Schema) {
	required := map[string]bool{}
	for _, r := range s.Required {
		required[r] = true
	}
	b.WriteString("| field | type | required | meaning |\n|---|---|---|---|\n")
	for _, name := range s.Order {
		p := s.Properties[name]
		req := "no"
		if required[name] {
			req = "yes"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", name, p.TypeName(), req, p.Description)
	}
}

func title(c Category) string {
	s := string(c)
	return strings.ToUpper(s[:1]) + s[1:]
}
