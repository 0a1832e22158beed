package api_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/auth/authtest"
	"github.com/taskerd/taskerd/internal/testdb"
	"github.com/taskerd/taskerd/internal/testserver"
)

// shareClusterWithFuzzWorkers points the fuzzing workers at this process's
// PostgreSQL. Go runs each fuzz target in worker processes that inherit
// the coordinator's environment when f.Fuzz starts them; without this
// each worker would boot a private cluster of its own.
func shareClusterWithFuzzWorkers(f *testing.F) {
	f.Helper()
	if fl := flag.Lookup("test.fuzz"); fl == nil || fl.Value.String() == "" || os.Getenv(testdb.EnvURL) != "" {
		return
	}
	if err := os.Setenv(testdb.EnvURL, testdb.AdminURL(f)); err != nil {
		f.Fatal(err)
	}
}

// fuzzTarget is a replica for the HTTP fuzz targets, with a task whose
// remote step is claimed at attempt 1, so that the worker protocol's
// routes reach a real step.
type fuzzTarget struct {
	handler        http.Handler
	taskID, stepID string // the task and its claimed remote step
	pendingStepID  string // a step of the task that waits for the remote one
}

const fuzzYAML = `namespace_name: shop
name: ship
version: 1.0.0
schema: {type: object, required: [order], properties: {order: {type: integer, minimum: 1}, note: {type: string, maxLength: 20}}}
step_templates:
  - {name: ship, handler: "remote:shipping", custom_events: [{name: order.shipped}]}
  - {name: notify, handler: noop, depends_on_step: ship}
`

func newFuzzTarget(f *testing.F, env map[string]string) *fuzzTarget {
	f.Helper()
	shareClusterWithFuzzWorkers(f)
	r := testserver.Start(f, env, nil)
	ft := &fuzzTarget{handler: r.Server.Handler()}
	return ft
}

// setup registers the template, creates a task and claims its remote step
// with the headers given (a token, in jwt mode).
func (ft *fuzzTarget) setup(f *testing.F, header http.Header) {
	f.Helper()
	mustServe := func(method, path, ct, body string, want int) map[string]any {
		rec := ft.serve(method, path, ct, body, header)
		if rec.Code != want {
			f.Fatalf("%s %s: %d, want %d: %s", method, path, rec.Code, want, rec.Body)
		}
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return out
	}
	mustServe("POST", "/templates", "application/yaml", fuzzYAML, 201)
	task := mustServe("POST", "/tasks", "application/json", `{"namespace":"shop","name":"ship","context":{"order":7}}`, 201)
	ft.taskID = task["task_id"].(string)
	for _, s := range task["workflow_steps"].([]any) {
		if s := s.(map[string]any); s["name"] == "notify" {
			ft.pendingStepID = s["step_id"].(string)
		}
	}
	claim := mustServe("POST", "/workers/claim", "application/json", `{"worker_id":"fuzz","handlers":["remote:shipping"],"wait_seconds":10}`, 200)
	steps := claim["steps"].([]any)
	if len(steps) != 1 {
		f.Fatalf("claim: %v", claim)
	}
	ft.stepID = steps[0].(map[string]any)["step_id"].(string)
}

// serve sends one request through the real router, in process.
func (ft *fuzzTarget) serve(method, path, contentType, body string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, api.BasePath+path, strings.NewReader(body))
	for k, vs := range header {
		req.Header[k] = vs
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	// A long poll or a stuck query must not stall the fuzzer: a request
	// still running after this is a hang, and fails the input.
	ctx, cancel := context.WithTimeout(req.Context(), 20*time.Second)
	defer cancel()
	rec := httptest.NewRecorder()
	ft.handler.ServeHTTP(rec, req.WithContext(ctx))
	return rec
}

// checkAnswer is the property of every fuzzed request: never a 5xx, and
// every refusal a problem document.
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	switch {
	case rec.Code >= 500:
		t.Fatalf("%s: %d: %s", what, rec.Code, rec.Body)
	case rec.Code >= 400 && rec.Header().Get("Content-Type") != api.ContentTypeProblem:
		t.Fatalf("%s: %d as %q, want %s", what, rec.Code, rec.Header().Get("Content-Type"), api.ContentTypeProblem)
	}
}

// waitsLong tells whether a claim body asks for a long poll; the fuzzer
// skips those, which would only slow it down (a claim that finds no work
// answers after wait_seconds, up to 30 s, by design).
func waitsLong(body []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	for k := range m {
		if strings.EqualFold(k, "wait_seconds") {
			return true
		}
	}
	return false
}

// FuzzHTTPRequestBody sends arbitrary bodies and Content-Types to the
// routes that decode one — task create (with the template's context
// schema behind it), task and step edits, the step actions, the remote
// worker protocol against a really claimed step, template registration,
// webhooks — through the real router on a real database. No 5xx, every
// refusal a problem document.
func FuzzHTTPRequestBody(f *testing.F) {
	ft := newFuzzTarget(f, nil)
	ft.setup(f, nil)
	routes := []struct{ method, path string }{
		{"POST", "/tasks"},
		{"PATCH", "/tasks/" + ft.taskID},
		{"POST", "/workers/claim"},
		{"POST", "/steps/" + ft.stepID + "/heartbeat"},
		{"POST", "/steps/" + ft.stepID + "/complete"},
		{"POST", "/steps/" + ft.stepID + "/fail"},
		{"PATCH", "/tasks/" + ft.taskID + "/workflow_steps/" + ft.pendingStepID},
		{"POST", "/tasks/" + ft.taskID + "/workflow_steps/" + ft.pendingStepID + "/resolve"},
		{"POST", "/templates"},
		{"POST", "/webhooks"},
	}
	for _, seed := range []struct {
		route uint8
		ct    string
		body  string
	}{
		{0, "application/json", `{"namespace":"shop","name":"ship","context":{"order":8,"note":"fragile"},"tags":["vip"],"priority":5}`},
		{0, "application/json", `{"namespace":"shop","name":"ship","context":{"order":"eight"}}`},
		{0, "application/json", `{"namespace":"shop","name":"ship","context":{"order":1e400}}`},
		{0, "application/json", `{"namespace":"shop","name":"ship","context":{"order":9223372036854775808}}`},
		{0, "application/json", `{"namespace":"shop","name":"ship","version":"9.9.9","run_at":"0001-01-01T00:00:00Z","bypass_steps":["nope"]}`},
		{0, "application/json", `{"namespace":"shop","name":"ship","context":{"order":1},"run_at":"9999-12-31T23:59:59Z","priority":-1000}`},
		{0, "application/json", `{"namespace":"sh\u0000op","name":"ship","context":{"order":1}}`},
		{0, "application/json", `{"namespace":"shop","name":"ship","context":{"order":1,"note":"\ud800"}}`},
		{1, "application/json", `{"reason":"customer called","tags":["a","b"]}`},
		{1, "application/json", `{"reason":null,"tags":null}`},
		{2, "application/json", `{"worker_id":"w","handlers":["remote:shipping"],"max":100,"lease_seconds":1e300}`},
		{2, "application/json", `{"worker_id":"","handlers":["remote:"],"max":-1}`},
		{3, "application/json", `{"attempt":1,"lease_seconds":30}`},
		{3, "application/json", `{"attempt":9223372036854775807,"lease_seconds":-1e300}`},
		{4, "application/json", `{"attempt":1,"results":{"shipped":true},"events":[{"name":"order.shipped","payload":{"value":1e308}}]}`},
		{4, "application/json", `{"attempt":2,"results":[],"events":[{"name":"undeclared"}]}`},
		{5, "application/json", `{"attempt":1,"error":{"message":"x","nested":[[[[[[[[]]]]]]]]},"retry_after_seconds":86400}`},
		{5, "application/json", `{"attempt":1,"error":17,"retryable":false}`},
		{6, "application/json", `{"retry_limit":1000,"inputs":{"a":1}}`},
		{6, "application/json", `{"retry_limit":0,"inputs":"x"}`},
		{7, "application/json", `{"results":{"a":[1,2,3]}}`},
		{8, "application/yaml", "namespace_name: shop\nname: other\nversion: 1.0.0\nstep_templates: [{name: a, handler: noop}]\n"},
		{8, "application/json", `{"name":"x","version":"1","step_templates":[{"name":"a","handler":"http","handler_config":{"url":"http://169.254.169.254/"}}]}`},
		{9, "application/json", `{"url":"http://127.0.0.1:1/hook","events":["task.*"]}`},
		{9, "application/json", `{"url":"ftp://x","events":["**"],"secret":""}`},
	} {
		f.Add(seed.route, seed.ct, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, route uint8, contentType string, body []byte) {
		rt := routes[int(route)%len(routes)]
		if rt.path == "/workers/claim" && waitsLong(body) {
			t.Skip("long polls are slow by design")
		}
		checkAnswer(t, rt.method+" "+rt.path, ft.serve(rt.method, rt.path, contentType, string(body), nil))
	})
}

// FuzzHTTPQuery sends arbitrary query strings, and cursors whose position
// is arbitrary JSON inside an envelope the server made, to the list
// routes. A forged position reaches the store's keyset query; it must be
// refused with a 400 or answered, never a 5xx.
func FuzzHTTPQuery(f *testing.F) {
	ft := newFuzzTarget(f, nil)
	ft.setup(f, nil)
	for range 2 {
		if rec := ft.serve("POST", "/tasks", "application/json", `{"namespace":"shop","name":"ship","context":{"order":1}}`, nil); rec.Code != 201 {
			f.Fatalf("create: %d %s", rec.Code, rec.Body)
		}
	}
	// A real cursor for each list: the fuzzer replaces its position.
	lists := []string{"/tasks?limit=1", "/tasks?limit=1&sort_by=status", "/tasks?limit=1&sort_by=completed_at&sort_order=asc",
		"/tasks/" + ft.taskID + "/transitions?limit=1", "/audit?limit=1"}
	envelopes := make([]map[string]json.RawMessage, len(lists))
	for i, path := range lists {
		rec := ft.serve("GET", path, "", "", nil)
		var page struct {
			NextCursor *string `json:"next_cursor"`
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
			f.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		if page.NextCursor == nil {
			continue // nothing to page through (the audit trail of an open server may be empty)
		}
		raw, err := base64.RawURLEncoding.DecodeString(*page.NextCursor)
		if err != nil || json.Unmarshal(raw, &envelopes[i]) != nil {
			f.Fatalf("GET %s: cursor %q is not base64url JSON", path, *page.NextCursor)
		}
		f.Add(uint8(i), []byte(envelopes[i]["k"]), "")
	}
	for _, seed := range []struct {
		list  uint8
		key   string
		query string
	}{
		{0, `{"id":"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b","t":"0001-01-01T00:00:00Z"}`, ""},
		{0, `{"id":"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b","t":"9999-12-31T23:59:59.999999999Z"}`, ""},
		{1, `{"id":"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b","s":"complete"}`, ""},
		{2, `{"id":"0190f8c4-5a8b-7c3e-9b1a-2f4e6d8c0a1b","t":"-0001-01-01T00:00:00Z"}`, ""},
		{3, `{"t":"2025-01-01T00:00:00+23:59","k":1,"id":9223372036854775807}`, ""},
		{4, `{"t":"0000-01-01T00:00:00Z","id":-1}`, ""},
		{0, `null`, "status=pending&status=nope&limit=99999999999999999999"},
		{0, `{}`, "created_after=2025-01-01T00:00:00Z&created_before=2024-01-01T00:00:00Z&tags=" + url.QueryEscape(strings.Repeat("x", 300))},
		{0, `{}`, "offset=-1&limit=0&sort_by=nope&sort_order=sideways"},
		{0, `{}`, "namespace=%ff%fe&name=%00"},
		{3, `{}`, "include=transitions&limit=1e3"},
	} {
		f.Add(seed.list, []byte(seed.key), seed.query)
	}
	f.Fuzz(func(t *testing.T, list uint8, key []byte, query string) {
		i := int(list) % len(lists)
		path := lists[i]
		if env := envelopes[i]; env != nil {
			forged := map[string]json.RawMessage{}
			for k, v := range env {
				forged[k] = v
			}
			forged["k"] = key
			if b, err := json.Marshal(forged); err == nil { // key is not JSON: send it as is
				path += "&cursor=" + base64.RawURLEncoding.EncodeToString(b)
			} else {
				path += "&cursor=" + url.QueryEscape(string(key))
			}
		}
		if query != "" {
			path += "&" + query
		}
		if _, err := url.ParseRequestURI(api.BasePath + path); err != nil || strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Skip("not a request line a client could send")
		}
		checkAnswer(t, "GET "+path, ft.serve("GET", path, "", "", nil))
	})
}

// fuzzSecret is the HS256 key of the authenticated fuzz replica.
const fuzzSecret = "fuzz-secret-0123456789abcdef0123456789abcdef"

// FuzzHTTPAuthorization sends arbitrary Authorization headers, and
// tokens signed with the real key whose claims are arbitrary, to a replica
// with TASKER_AUTH_MODE=jwt. Every answer is a 401 or 403 problem, or
// (for an admin token that survived) the route's own answer; never a 5xx.
func FuzzHTTPAuthorization(f *testing.F) {
	ft := newFuzzTarget(f, map[string]string{
		"TASKER_AUTH_MODE": "jwt", "TASKER_INSECURE_NO_AUTH": "false", "TASKER_JWT_SECRET": fuzzSecret,
		"TASKER_JWT_ISSUER": authtest.Issuer, "TASKER_JWT_AUDIENCE": authtest.Audience,
		"TASKER_METRICS_AUTH": "true",
	})
	admin := authtest.SignHS256(f, []byte(fuzzSecret), authtest.Valid("root", "admin"))
	ft.setup(f, http.Header{"Authorization": {"Bearer " + admin}})
	routes := []struct{ method, path, body string }{
		{"GET", "/tasks", ""},
		{"GET", "/tasks/" + ft.taskID, ""},
		{"POST", "/tasks", `{"namespace":"shop","name":"ship","context":{"order":3}}`},
		{"POST", "/workers/claim", `{"worker_id":"w","handlers":["remote:shipping"]}`},
		{"POST", "/steps/" + ft.stepID + "/heartbeat", `{"attempt":1}`},
		{"GET", "/audit", ""},
		{"GET", "/metrics", ""},
		{"GET", "/health/status", ""},
	}
	viewer := authtest.SignHS256(f, []byte(fuzzSecret), authtest.Valid("v", "viewer"))
	for _, seed := range []string{
		"Bearer " + admin, "Bearer " + viewer, "bearer " + admin, "Bearer  " + admin, "Basic cm9vdDpyb290", "Bearer",
		"Bearer " + authtest.Malformed, "Bearer " + authtest.AlgNone(f, authtest.Valid("root", "admin")),
		"Bearer " + authtest.Tamper(admin), "Bearer " + strings.Repeat("A", 8000),
		"Bearer " + authtest.SignHS256(f, []byte(fuzzSecret), authtest.Claims{"iss": authtest.Issuer, "aud": authtest.Audience, "sub": "x", "roles": map[string]any{"a": 1}, "exp": 4102444800}),
	} {
		for r := range routes {
			f.Add(uint8(r), seed, []byte(nil))
		}
	}
	f.Add(uint8(0), "", []byte(`{"iss":"https://issuer.test","aud":"taskerd-test","sub":"root","roles":"admin","exp":4102444800}`))
	f.Add(uint8(1), "", []byte(`{"iss":"https://issuer.test","aud":"taskerd-test","sub":"root","roles":["admin",null],"exp":4102444800}`))
	f.Fuzz(func(t *testing.T, route uint8, authorization string, claims []byte) {
		rt := routes[int(route)%len(routes)]
		if len(claims) > 0 {
			// Sign the fuzzer's claims with the real key: past the signature.
			authorization = "Bearer " + signRaw(claims)
		}
		if strings.ContainsAny(authorization, "\r\n\x00") {
			t.Skip("not a header a client could send")
		}
		rec := ft.serve(rt.method, rt.path, "application/json", rt.body, http.Header{"Authorization": {authorization}})
		checkAnswer(t, rt.method+" "+rt.path, rec)
		if rec.Code == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("401 without a Bearer challenge: %q", rec.Header().Get("WWW-Authenticate"))
		}
	})
}

// signRaw signs an arbitrary payload with fuzzSecret (HS256).
func signRaw(payload []byte) string {
	b64 := base64.RawURLEncoding.EncodeToString
	signing := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64(payload)
	return signing + "." + b64(hmacSHA256([]byte(fuzzSecret), []byte(signing)))
}

func hmacSHA256(key, data []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(data)
	return mac.Sum(nil)
}
