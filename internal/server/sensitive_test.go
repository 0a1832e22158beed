package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/registry"
)

// The sensitive values of cardYAML's context. Each is one no id, trace id
// or timestamp could hold by chance (the cvv's Q is not a hex digit).
const (
	secretToken = "tok_S3cr3t9f2c71"
	secretPIN   = 48213579
	secretCVV   = "7Q3"
)

var secretForms = []string{secretToken, fmt.Sprint(secretPIN), secretCVV}

const cardYAML = `namespace_name: shop
name: card_payment
version: 1.0.0
schema:
  type: object
  properties:
    card_token: {type: string, x-sensitive: true}
    pin: {type: integer, x-sensitive: true}
    amount: {type: number}
    holder:
      type: object
      properties:
        cvv: {type: string, x-sensitive: true}
        name: {type: string}
step_templates:
  - name: pay
    handler: cardpay
    default_retry_limit: 3
    backoff: {base: 50ms, max: 100ms}
    custom_events:
      - {name: card.declined, description: "The issuer declined the card"}
`

// cardKind is a careless payment handler: it puts the card's secrets in
// its custom event, in its error (attempt 1) and in a panic (attempt 2),
// and succeeds at attempt 3. It records the contexts it was given.
type cardKind struct {
	mu       sync.Mutex
	contexts []map[string]any
}

func (*cardKind) Name() string                         { return "cardpay" }
func (*cardKind) ValidateConfig(json.RawMessage) error { return nil }

func (k *cardKind) Handle(_ context.Context, s handler.Step) (json.RawMessage, error) {
	var c struct {
		CardToken string  `json:"card_token"`
		PIN       int     `json:"pin"`
		Amount    float64 `json:"amount"`
		Holder    struct {
			CVV  string `json:"cvv"`
			Name string `json:"name"`
		} `json:"holder"`
	}
	var raw map[string]any
	if err := json.Unmarshal(s.Context, &c); err != nil {
		return nil, err
	}
	_ = json.Unmarshal(s.Context, &raw)
	k.mu.Lock()
	k.contexts = append(k.contexts, raw)
	k.mu.Unlock()
	switch s.Attempt {
	case 1:
		if err := s.Publish("card.declined", map[string]any{"card_token": c.CardToken, "pin": c.PIN,
			"note": "declined card " + c.CardToken + " with cvv " + c.Holder.CVV, "amount": c.Amount, "holder": c.Holder.Name}); err != nil {
			return nil, err
		}
		return nil, &handler.Error{Err: fmt.Errorf("card %s (pin %d, cvv %s) declined", c.CardToken, c.PIN, c.Holder.CVV),
			Retryable: true, RetryAfter: 50 * time.Millisecond}
	case 2:
		panic("charging " + c.CardToken + " crashed")
	}
	return json.RawMessage(`{"paid":true}`), nil
}

func (k *cardKind) seen() []map[string]any {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]map[string]any(nil), k.contexts...)
}

// TestSensitiveContextRedactedFromSinks is issue 10's item 4 beyond the
// API: a task whose template marks context properties x-sensitive runs a
// handler that leaks them into its error, a panic and a custom event; the
// handler gets the real values, and none of them reaches the bus's
// subscribers, the webhook receiver, the spans or the log.
func TestSensitiveContextRedactedFromSinks(t *testing.T) {
	t.Parallel()
	kind := &cardKind{}
	r := startReplica(t, kind)
	r.register(cardYAML)
	rc := newReceiver(t, "a-secret-of-sixteen-chars")
	if code, _, body := r.call("POST", "/webhooks", fmt.Sprintf(`{"url":%q,"events":["*"],"secret":%q}`, rc.srv.URL, rc.secret), nil); code != 201 {
		t.Fatalf("create webhook: %d %s", code, body)
	}
	ctxDoc := fmt.Sprintf(`{"card_token":%q,"pin":%d,"amount":12.5,"holder":{"cvv":%q,"name":"Ada"}}`, secretToken, secretPIN, secretCVV)
	code, _, body := r.call("POST", "/tasks", `{"namespace":"shop","name":"card_payment","context":`+ctxDoc+`}`, nil)
	if code != 201 {
		t.Fatalf("create task: %d %s", code, body)
	}
	var created struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	id := created.TaskID
	r.waitTask(id, "complete")

	t.Run("the handler gets the real values", func(t *testing.T) {
		seen := kind.seen()
		if len(seen) != 3 {
			t.Fatalf("the handler ran %d times, want 3", len(seen))
		}
		for i, c := range seen {
			holder, _ := c["holder"].(map[string]any)
			if c["card_token"] != secretToken || c["pin"] != float64(secretPIN) || holder["cvv"] != secretCVV {
				t.Errorf("attempt %d got the context %v", i+1, c)
			}
		}
	})

	t.Run("events", func(t *testing.T) {
		var evs []engine.Event
		eventually(t, 10*time.Second, "the task's last event", func() bool {
			evs = r.events.ofTask(id)
			return len(evs) > 0 && evs[len(evs)-1].Name == engine.EventTaskFinalizationCompleted
		})
		var failed, declined int
		for i := range evs {
			ev := &evs[i]
			raw, err := json.Marshal(struct {
				Event    *engine.Event
				Envelope events.Envelope
			}{ev, events.NewEnvelope([16]byte{}, ev)})
			if err != nil {
				t.Fatal(err)
			}
			assertNoSecret(t, "event "+ev.Name, string(raw))
			switch {
			case ev.Name == "step.failed":
				failed++
				if !strings.Contains(string(ev.Error), registry.Redacted) {
					t.Errorf("step.failed error %s: want the secrets replaced by %s", ev.Error, registry.Redacted)
				}
			case ev.Name == "card.declined":
				declined++
				var p map[string]any
				if err := json.Unmarshal(ev.Payload, &p); err != nil {
					t.Fatal(err)
				}
				if p["card_token"] != registry.Redacted || p["pin"] != registry.Redacted || p["amount"] != 12.5 || p["holder"] != "Ada" ||
					p["note"] != "declined card "+registry.Redacted+" with cvv "+registry.Redacted {
					t.Errorf("card.declined payload %v: want the secrets, and only they, redacted", p)
				}
			}
		}
		if failed != 2 || declined != 1 {
			t.Errorf("%d step.failed and %d card.declined events, want 2 and 1", failed, declined)
		}
	})

	t.Run("webhooks", func(t *testing.T) {
		has := func(name string) bool {
			for _, d := range rc.deliveries() {
				if d.event == name {
					return true
				}
			}
			return false
		}
		eventually(t, 20*time.Second, "the deliveries of step.failed, card.declined and task.completed", func() bool {
			return has("step.failed") && has("card.declined") && has("task.completed")
		})
		for _, d := range rc.deliveries() {
			raw, _ := json.Marshal(d.body)
			assertNoSecret(t, "delivery of "+d.event, string(raw))
			if d.event == "card.declined" {
				data, _ := d.body["data"].(map[string]any)
				payload, _ := data["payload"].(map[string]any)
				if payload["card_token"] != registry.Redacted || payload["holder"] != "Ada" {
					t.Errorf("card.declined delivery: %s", raw)
				}
			}
		}
	})

	t.Run("spans", func(t *testing.T) {
		spans := r.taskSpans(t, id, 4) // the task and three attempts of pay
		redactedError, redactedPayload := false, false
		for _, s := range spans {
			raw, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			assertNoSecret(t, "span "+s.Name, string(raw))
			if strings.Contains(s.Status.Description, registry.Redacted) {
				redactedError = true
			}
			for _, ev := range s.Events {
				for _, a := range ev.Attributes {
					if a.Key == "tasker.payload" && strings.Contains(a.Value.String(), registry.Redacted) {
						redactedPayload = true
					}
				}
			}
		}
		if !redactedError || !redactedPayload {
			t.Errorf("want a step span whose error, and one whose card.declined event, shows %s (error %v, payload %v)",
				registry.Redacted, redactedError, redactedPayload)
		}
	})

	t.Run("logs", func(t *testing.T) {
		var lines []map[string]any
		eventually(t, 10*time.Second, "the task.completed log line", func() bool {
			lines = r.logs.lines(t)
			for _, l := range lines {
				if l["msg"] == "task.completed" && l["task_id"] == id {
					return true
				}
			}
			return false
		})
		var panicked, failed bool
		for _, l := range lines {
			raw, _ := json.Marshal(l)
			assertNoSecret(t, fmt.Sprintf("log line %q", l["msg"]), string(raw))
			switch msg, _ := l["msg"].(string); {
			case msg == "handler panicked":
				panicked = strings.Contains(fmt.Sprint(l["panic"]), registry.Redacted)
			case msg == "step.failed" && l["task_id"] == id:
				failed = failed || strings.Contains(fmt.Sprint(l["error"]), registry.Redacted)
			}
		}
		if !panicked || !failed {
			t.Errorf("want the panic and a step.failed line logged with %s (panic %v, step.failed %v)", registry.Redacted, panicked, failed)
		}
	})
}

// assertNoSecret fails the test when text holds one of the secrets.
func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range secretForms {
		if strings.Contains(text, s) {
			t.Errorf("%s holds the sensitive value %q: %s", where, s, text)
		}
	}
}

const remoteCardYAML = `namespace_name: shop
name: remote_card
version: 1.0.0
schema:
  type: object
  properties:
    card_token: {type: string, x-sensitive: true}
    pin: {type: integer, x-sensitive: true}
step_templates:
  - name: pay
    handler: "remote:cards"
    backoff: {base: 50ms, max: 100ms}
    custom_events:
      - {name: card.declined, description: "The issuer declined the card"}
`

// TestSensitiveContextRedactedFromRemoteWorkers: what a remote worker
// reports (a failure message and its details, a custom event) is redacted
// as the engine's own handlers' is, while the worker's claim carries the
// real values.
func TestSensitiveContextRedactedFromRemoteWorkers(t *testing.T) {
	t.Parallel()
	r := startReplica(t)
	r.register(remoteCardYAML)
	ctxDoc := fmt.Sprintf(`{"card_token":%q,"pin":%d}`, secretToken, secretPIN)
	code, _, body := r.call("POST", "/tasks", `{"namespace":"shop","name":"remote_card","context":`+ctxDoc+`}`, nil)
	if code != 201 {
		t.Fatalf("create task: %d %s", code, body)
	}
	var created struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	id := created.TaskID
	claim := func() (stepID string, attempt int) {
		t.Helper()
		code, _, body := r.call("POST", "/workers/claim", `{"worker_id":"w-cards","handlers":["remote:cards"],"wait_seconds":10}`, nil)
		var v struct {
			Steps []struct {
				StepID  string         `json:"step_id"`
				Attempt int            `json:"attempt"`
				Context map[string]any `json:"context"`
			} `json:"steps"`
		}
		if err := json.Unmarshal(body, &v); err != nil || code != 200 || len(v.Steps) != 1 {
			t.Fatalf("claim: %d %s", code, body)
		}
		if v.Steps[0].Context["card_token"] != secretToken {
			t.Errorf("the worker got the context %v, want the real values", v.Steps[0].Context)
		}
		return v.Steps[0].StepID, v.Steps[0].Attempt
	}
	stepID, attempt := claim()
	failBody := fmt.Sprintf(`{"attempt":%d,"error":{"message":"card %s declined","pin":%d},"retry_after_seconds":0.05}`, attempt, secretToken, secretPIN)
	if code, _, body := r.call("POST", "/steps/"+stepID+"/fail", failBody, nil); code != 200 {
		t.Fatalf("fail: %d %s", code, body)
	}
	// The failure is stored redacted: the step's last_error.
	_, _, body = r.call("GET", "/tasks/"+id, "", nil)
	var view struct {
		Steps []struct {
			LastError json.RawMessage `json:"last_error"`
		} `json:"workflow_steps"`
	}
	if err := json.Unmarshal(body, &view); err != nil || len(view.Steps) != 1 {
		t.Fatalf("task: %s", body)
	}
	assertNoSecret(t, "the step's last_error", string(view.Steps[0].LastError))
	if !strings.Contains(string(view.Steps[0].LastError), registry.Redacted) {
		t.Errorf("last_error %s: want the secrets replaced by %s", view.Steps[0].LastError, registry.Redacted)
	}
	stepID, attempt = claim()
	completeBody := fmt.Sprintf(`{"attempt":%d,"results":{"paid":true},"events":[{"name":"card.declined","payload":{"card_token":%q,"note":"first try with %s"}}]}`,
		attempt, secretToken, secretToken)
	if code, _, body := r.call("POST", "/steps/"+stepID+"/complete", completeBody, nil); code != 200 {
		t.Fatalf("complete: %d %s", code, body)
	}
	r.waitTask(id, "complete")

	var evs []engine.Event
	eventually(t, 10*time.Second, "the task's last event", func() bool {
		evs = r.events.ofTask(id)
		return len(evs) > 0 && evs[len(evs)-1].Name == engine.EventTaskFinalizationCompleted
	})
	declined := false
	for i := range evs {
		raw, _ := json.Marshal(evs[i])
		assertNoSecret(t, "event "+evs[i].Name, string(raw))
		declined = declined || evs[i].Name == "card.declined" && strings.Contains(string(evs[i].Payload), registry.Redacted)
	}
	if !declined {
		t.Errorf("want a card.declined event showing %s", registry.Redacted)
	}
	for _, s := range r.taskSpans(t, id, 3) {
		raw, _ := json.Marshal(s)
		assertNoSecret(t, "span "+s.Name, string(raw))
	}
	for _, l := range r.logs.lines(t) {
		raw, _ := json.Marshal(l)
		assertNoSecret(t, fmt.Sprintf("log line %q", l["msg"]), string(raw))
	}
	_, _, task := r.call("GET", "/tasks/"+id, "", nil)
	if !strings.Contains(string(task), secretToken) {
		// The API shows the context itself to a caller allowed to see it
		// (no auth here); only the step's stored error must be clean.
		t.Errorf("GET /tasks/%s should show the context to an unauthenticated replica's caller: %s", id, task)
	}
}
