package handler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/handler"
)

func TestHTTPConfigValidation(t *testing.T) {
	t.Parallel()
	k, err := handler.NewHTTP(handler.HTTPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		config  string
		wantErr string // "" means valid
	}{
		{`{"url": "https://api.example.com/orders/{{ .context.order_id }}"}`, ""},
		{`{"method": "post", "url": "http://localhost:8080/x?a={{ .attempt }}", "headers": {"Authorization": "Bearer {{ secret \"API_TOKEN\" }}"},
		   "query": {"q": "{{ .context.q }}"}, "body": {"n": "{{ .context.n }}", "list": ["{{ .attempt }}"]}, "timeout": "2s",
		   "success_status": [200, "3xx"], "result": "/data/id"}`, ""},
		{`{"url": "https://api.example.com", "result": "response"}`, ""},
		{`{}`, `"url" is required`},
		{`{"url": "https://api.example.com/", "method": "BREW"}`, `"method" must be one of`},
		{`{"url": "{{ .context.callback }}"}`, "must start with http:// or https://"},
		{`{"url": "https://{{ .context.host }}/x"}`, "must start with http:// or https:// and a host"},
		{`{"url": "https://api.example.com{{ .context.path }}"}`, "followed by /, ? or #"},
		{`{"url": "ftp://files.example.com/x"}`, "must start with http:// or https://"},
		{`{"url": "https://api.example.com/{{ .context.x "}`, `"url"`},
		{`{"url": "https://api.example.com/{{ nope .x }}"}`, `function "nope" not defined`},
		{`{"url": "https://api.example.com/{{ template \"x\" }}"}`, "template"},
		{`{"url": "https://api.example.com/", "headers": {"Idempotency-Key": "x"}}`, "set by taskerd"},
		{`{"url": "https://api.example.com/", "headers": {"traceparent": "x"}}`, "set by taskerd"},
		{`{"url": "https://api.example.com/", "headers": {"bad header": "x"}}`, "not a valid header name"},
		{`{"url": "https://api.example.com/", "headers": {"X-Token": "{{ secret .context.name }}"}}`, "one literal name"},
		{`{"url": "https://api.example.com/", "headers": {"X-Token": "{{ secret \"api_token\" }}"}}`, "upper-case words"},
		{`{"url": "https://api.example.com/", "body": {"a": 1}}`, `"body" is not sent with GET`},
		{`{"url": "https://api.example.com/", "method": "POST", "body": {"a": "{{ .x"}}`, `"body": template at /a`},
		{`{"url": "https://api.example.com/", "success_status": [700]}`, "not an HTTP status"},
		{`{"url": "https://api.example.com/", "success_status": ["2yy"]}`, "statuses (201) or classes"},
		{`{"url": "https://api.example.com/", "result": "everything"}`, `"result" must be`},
		{`{"url": "https://api.example.com/", "timeout": "soon"}`, `"timeout" must be a Go duration`},
		{`{"url": "https://api.example.com/", "verb": "GET"}`, `unknown field "verb"`},
		{`{"url": "https://api.example.com/{{ taskerd_escape_path .x }}"}`, "reserved"},
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

// secretEnv is a fake environment holding one namespace's secrets and a
// neighbour's.
func secretEnv(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

const theSecret = "s3cr3t-t0ken/with+chars"

// received is what the fake service saw of one request.
type received struct {
	method, path, rawQuery, body string
	header                       http.Header
}

// sequenceServer answers each request with the next behaviour and records it.
func sequenceServer(t *testing.T, behaviours ...func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, func() []received) {
	t.Helper()
	var mu sync.Mutex
	var got []received
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(body), r.Header.Clone()})
		mu.Unlock()
		i := int(n.Add(1)) - 1
		if i >= len(behaviours) {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		behaviours[i](w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), got...)
	}
}

// The sequence: 200, 429 + Retry-After, 503, 500, 404, slow,
// oversized; each classified as the engine needs, headers and escaping as
// promised, and the secret nowhere in results or errors.
func TestHTTPOutcomes(t *testing.T) {
	t.Parallel()
	echoAuth := func(status int) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"ok": %v, "echo": %q, "nested": {"auth": [%q]}}`, status < 300, r.Header.Get("Authorization"), r.Header.Get("Authorization"))
		}
	}
	slowDone := make(chan struct{})
	srv, requests := sequenceServer(t,
		echoAuth(200),
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
		},
		func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) },
		echoAuth(404),
		func(w http.ResponseWriter, r *http.Request) {
			select { // slow: longer than the config's timeout
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			close(slowDone)
		},
		func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(strings.Repeat("x", 5000))) },
	)
	k, err := handler.NewHTTP(handler.HTTPConfig{MaxResponseBytes: 4096, DenyCIDRs: handler.DefaultDenyCIDRs,
		LookupEnv: secretEnv(map[string]string{"TASKER_SECRET_PAYMENTS_GATEWAY_TOKEN": theSecret})})
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`{"method": "POST", "url": "%s/orders/{{ .context.order_id }}/refunds?from={{ .steps.validate.results.who }}",
		"headers": {"Authorization": "Bearer {{ secret \"GATEWAY_TOKEN\" }}"},
		"query": {"attempt": "{{ .attempt }}"},
		"body": {"amount": "{{ .context.amount }}", "note": "refund {{ .context.order_id }}", "total": "{{ .steps.validate.results.total }}"},
		"timeout": "300ms"}`, srv.URL)
	if err := k.ValidateConfig(json.RawMessage(config)); err != nil {
		t.Fatal(err)
	}
	stepID, taskID := uuid.New(), uuid.New()
	step := func(attempt int) handler.Step {
		return handler.Step{TaskID: taskID, StepID: stepID, Namespace: "payments", TaskName: "refund", TaskVersion: "1.0.0",
			StepName: "charge", Attempt: attempt, Config: json.RawMessage(config),
			Context:       json.RawMessage(`{"order_id": "a/b c", "amount": 1250}`),
			Parents:       map[string]json.RawMessage{"validate": json.RawMessage(`{"who": "x&y=z", "total": 12.5}`)},
			CorrelationID: "corr-1", Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	}
	ctx := context.Background()
	noSecret := func(what, s string) {
		t.Helper()
		if strings.Contains(s, "s3cr3t") || strings.Contains(s, "t0ken") {
			t.Errorf("%s holds the secret: %s", what, s)
		}
	}

	// 200: the JSON body, redacted.
	results, err := k.Handle(ctx, step(1))
	if err != nil {
		t.Fatalf("200: %v", err)
	}
	noSecret("results", string(results))
	var doc map[string]any
	if err := json.Unmarshal(results, &doc); err != nil || doc["ok"] != true || doc["echo"] != "Bearer [REDACTED]" {
		t.Errorf("200 results: %s (%v)", results, err)
	}
	first := requests()[0]
	if first.method != "POST" || first.path != "/orders/a%2Fb%20c/refunds" {
		t.Errorf("request line: %s %s", first.method, first.path)
	}
	if !strings.Contains(first.rawQuery, "from=x%26y%3Dz") || !strings.Contains(first.rawQuery, "attempt=1") {
		t.Errorf("query: %s", first.rawQuery)
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(first.body), &sent); err != nil || sent["amount"] != float64(1250) ||
		sent["note"] != "refund a/b c" || sent["total"] != 12.5 {
		t.Errorf("body: %s (%v)", first.body, err)
	}
	h := first.header
	if h.Get("Authorization") != "Bearer "+theSecret || h.Get("Idempotency-Key") != stepID.String() ||
		h.Get("X-Correlation-ID") != "corr-1" || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers: %v", h)
	}
	if tp := h.Get("Traceparent"); !regexp.MustCompile(`^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$`).MatchString(tp) || strings.Contains(tp, "00f067aa0ba902b7") {
		t.Errorf("traceparent %q: want the task's trace with a new span", tp)
	}

	// 429 with Retry-After seconds: retryable after exactly that.
	_, err = k.Handle(ctx, step(2))
	if retryable, after := handler.Classify(err); !retryable || after != 7*time.Second {
		t.Errorf("429: %v retryable=%v after=%v", err, retryable, after)
	}
	// 503 with an HTTP date: retryable after about that.
	_, err = k.Handle(ctx, step(3))
	if retryable, after := handler.Classify(err); !retryable || after < 80*time.Second || after > 91*time.Second {
		t.Errorf("503: %v retryable=%v after=%v", err, retryable, after)
	}
	// 500: retryable with the step's own backoff.
	_, err = k.Handle(ctx, step(4))
	if retryable, after := handler.Classify(err); !retryable || after != 0 || !strings.Contains(err.Error(), "500") {
		t.Errorf("500: %v retryable=%v after=%v", err, retryable, after)
	}
	// 404: permanent, the body in the error, the secret not.
	_, err = k.Handle(ctx, step(5))
	if retryable, _ := handler.Classify(err); retryable || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "REDACTED") {
		t.Errorf("404: %v retryable=%v", err, retryable)
	}
	noSecret("404 error", err.Error())
	// Slow: the config's timeout ends it, retryably.
	start := time.Now()
	_, err = k.Handle(ctx, step(6))
	if retryable, _ := handler.Classify(err); !retryable || !strings.Contains(err.Error(), "timed out") || time.Since(start) > 5*time.Second {
		t.Errorf("slow: %v retryable=%v after %s", err, retryable, time.Since(start))
	}
	<-slowDone
	// Oversized: permanent.
	_, err = k.Handle(ctx, step(7))
	if retryable, _ := handler.Classify(err); retryable || !strings.Contains(err.Error(), "larger than 4096 bytes") {
		t.Errorf("oversized: %v retryable=%v", err, retryable)
	}
	for i, r := range requests() {
		if r.header.Get("Idempotency-Key") != stepID.String() {
			t.Errorf("request %d: Idempotency-Key %q, want the step id on every attempt", i, r.header.Get("Idempotency-Key"))
		}
	}
}

func TestHTTPResultModes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/text":
			_, _ = w.Write([]byte("plain words"))
		case "/created":
			w.Header().Set("X-Thing", "7")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"data": {"id": "re_1", "items": [1, 2]}}`))
		case "/redirect":
			http.Redirect(w, r, "/text", http.StatusFound)
		}
	}))
	t.Cleanup(srv.Close)
	k, _ := handler.NewHTTP(handler.HTTPConfig{})
	for _, tc := range []struct {
		config, want, wantErr string
	}{
		{`{"url": "URL/text"}`, `"plain words"`, ""},
		{`{"url": "URL/created", "result": "/data/id"}`, `"re_1"`, ""},
		{`{"url": "URL/created", "result": "/data/items/1"}`, `2`, ""},
		{`{"url": "URL/created", "result": "/nope"}`, "", "no value there"},
		{`{"url": "URL/created", "result": "none"}`, `null`, ""},
		{`{"url": "URL/created", "success_status": [200]}`, "", "201 Created"},
		{`{"url": "URL/redirect"}`, "", "302 Found"},
	} {
		config := strings.ReplaceAll(tc.config, "URL", srv.URL)
		got, err := k.Handle(context.Background(), handler.Step{StepID: uuid.New(), Namespace: "ns", Attempt: 1, Config: json.RawMessage(config)})
		switch {
		case tc.wantErr != "":
			if retryable, _ := handler.Classify(err); err == nil || retryable || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want a permanent error with %q", tc.config, err, tc.wantErr)
			}
		case err != nil || string(got) != tc.want:
			t.Errorf("%s: %s, %v; want %s", tc.config, got, err, tc.want)
		}
	}
	got, err := k.Handle(context.Background(), handler.Step{StepID: uuid.New(), Attempt: 1,
		Config: json.RawMessage(`{"url": "` + srv.URL + `/created", "result": "response"}`)})
	var resp struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    map[string]any    `json:"body"`
	}
	if err != nil || json.Unmarshal(got, &resp) != nil || resp.Status != 201 || resp.Headers["x-thing"] != "7" || resp.Body["data"] == nil {
		t.Errorf("response mode: %s %v", got, err)
	}
}

// Outbound requests to denied networks are refused before a connection is
// made: cloud metadata by default, loopback when the list says so.
func TestHTTPDeniedAddresses(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)

	def, _ := handler.NewHTTP(handler.HTTPConfig{})
	_, err := def.Handle(context.Background(), handler.Step{StepID: uuid.New(), Attempt: 1,
		Config: json.RawMessage(`{"url": "http://169.254.169.254/latest/meta-data/"}`)})
	var denied *handler.DeniedAddressError
	if retryable, _ := handler.Classify(err); !errors.As(err, &denied) || retryable {
		t.Errorf("metadata address: %v, want a permanent DeniedAddressError", err)
	}
	if _, err := def.Handle(context.Background(), handler.Step{StepID: uuid.New(), Attempt: 1,
		Config: json.RawMessage(`{"url": "` + srv.URL + `/"}`)}); err != nil || hits.Load() != 1 {
		t.Errorf("loopback is allowed by default: %v, hits %d", err, hits.Load())
	}

	strict, _ := handler.NewHTTP(handler.HTTPConfig{DenyCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	_, err = strict.Handle(context.Background(), handler.Step{StepID: uuid.New(), Attempt: 1,
		Config: json.RawMessage(`{"url": "` + srv.URL + `/"}`)})
	if !errors.As(err, &denied) || hits.Load() != 1 {
		t.Errorf("denied loopback: %v, hits %d", err, hits.Load())
	}

	for _, tc := range []struct{ in, want string }{
		{"none", "[]"},
		{"", "[]"},
		{"10.0.0.0/8, 192.168.1.7", "[10.0.0.0/8 192.168.1.7/32]"},
	} {
		got, err := handler.ParseCIDRs(tc.in)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("ParseCIDRs(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := handler.ParseCIDRs("10.0.0.0/33"); err == nil {
		t.Error("ParseCIDRs accepted 10.0.0.0/33")
	}
}

// A namespace reads its own secrets only, however names and namespaces are
// cut by underscores; a missing secret fails for good naming the variable,
// never holding a value.
func TestHTTPSecretScoping(t *testing.T) {
	t.Parallel()
	if got := handler.SecretVariable("customer_success", "API_KEY"); got != "TASKER_SECRET_CUSTOMER__SUCCESS_API_KEY" {
		t.Errorf("SecretVariable: %s", got)
	}
	var gotAuth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("X-Key"))
	}))
	t.Cleanup(srv.Close)
	env := secretEnv(map[string]string{
		"TASKER_SECRET_A__B_C": "belongs-to-a_b", // namespace a_b, secret C
		"TASKER_SECRET_A_B_C":  "belongs-to-a",   // namespace a, secret B_C
		"TASKER_DATABASE_URL":  "postgres://root:pw@db/x",
	})
	k, _ := handler.NewHTTP(handler.HTTPConfig{LookupEnv: env})
	run := func(ns, secret string) error {
		config := `{"url": "` + srv.URL + `/", "headers": {"X-Key": "{{ secret \"` + secret + `\" }}"}}`
		_, err := k.Handle(context.Background(), handler.Step{StepID: uuid.New(), Namespace: ns, Attempt: 1, Config: json.RawMessage(config)})
		return err
	}
	if err := run("a", "B_C"); err != nil || gotAuth.Load() != "belongs-to-a" {
		t.Errorf("a/B_C: %v %v", err, gotAuth.Load())
	}
	if err := run("a_b", "C"); err != nil || gotAuth.Load() != "belongs-to-a_b" {
		t.Errorf("a_b/C: %v %v", err, gotAuth.Load())
	}
	err := run("tasker", "DATABASE_URL")
	if retryable, _ := handler.Classify(err); err == nil || retryable || !strings.Contains(err.Error(), "TASKER_SECRET_TASKER_DATABASE_URL") ||
		strings.Contains(err.Error(), "postgres://") {
		t.Errorf("reaching outside the secrets: %v", err)
	}
}

// Cancelling the step (its task was cancelled) ends an in-flight request.
func TestHTTPCancellation(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	k, _ := handler.NewHTTP(handler.HTTPConfig{})
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := k.Handle(ctx, handler.Step{StepID: uuid.New(), Attempt: 1, Config: json.RawMessage(`{"url": "` + srv.URL + `/"}`)})
		done <- err
	}()
	<-arrived
	cancel(errors.New("the task was cancelled"))
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "the task was cancelled") {
			t.Errorf("cancelled request: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not end when its step was cancelled")
	}
}
