package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
)

type testStepTemplate struct {
	Name           string `json:"name"`
	TimeoutSeconds int    `json:"timeout_seconds"`
}

type testLimits struct {
	MaxRetries uint `json:"max_retries"`
}

type testAudit struct {
	CreatedBy string `json:"created_by"`
}

type testCreateWorkflow struct {
	testAudit                        // promoted: created_by is a known field
	Name          string             `json:"name"`
	Priority      int                `json:"priority"`
	Labels        map[string]string  `json:"labels"`
	Params        map[string]any     `json:"params"`
	Limits        *testLimits        `json:"limits"`
	StepTemplates []testStepTemplate `json:"step_templates"`
	ID            uuid.UUID          `json:"id"`
	Secret        string             `json:"-"`
}

// decodeTestLimit is small so the limit cases stay readable.
const decodeTestLimit = 256

func newDecodeRouter(t *testing.T) http.Handler {
	t.Helper()
	logger, _ := newTestLogger(t)
	r := chi.NewRouter()
	r.NotFound(NotFoundHandler())
	r.MethodNotAllowed(MethodNotAllowedHandler())
	r.Use(RequestID, BodyLimit(decodeTestLimit))
	r.Post("/tasker/workflows", func(w http.ResponseWriter, r *http.Request) {
		var in testCreateWorkflow
		if err := DecodeJSON(r, &in); err != nil {
			WriteError(w, r, logger, err)
			return
		}
		WriteJSON(w, http.StatusOK, in)
	})
	return r
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name          string
		contentType   string // "" sends no Content-Type
		body          string
		chunked       bool // no Content-Length, so only MaxBytesReader can stop it
		wantStatus    int
		wantType      string // problem slug; empty on success
		wantDetail    string // substring of the problem detail
		wantPointer   string // pointer of the single FieldError, if any
		wantFieldText string // substring of that FieldError's detail
	}{
		{name: "valid", contentType: "application/json", body: `{"name":"nightly","priority":3}`, wantStatus: 200},
		{name: "charset utf-8 parameter", contentType: "application/json; charset=UTF-8", body: `{"name":"a"}`, wantStatus: 200},
		{name: "+json media type", contentType: "application/merge-patch+json", body: `{"name":"a"}`, wantStatus: 200},
		{name: "missing content type", body: `{"name":"a"}`, wantStatus: 200},
		{name: "trailing whitespace", contentType: "application/json", body: "{\"name\":\"a\"}\n\t ", wantStatus: 200},
		{name: "promoted embedded field", contentType: "application/json", body: `{"created_by":"ann"}`, wantStatus: 200},
		{name: "case-insensitive field match", contentType: "application/json", body: `{"NAME":"a"}`, wantStatus: 200},
		{name: "unknown key inside map of any", contentType: "application/json", body: `{"params":{"anything":1}}`, wantStatus: 200},
		{
			name: "text/plain", contentType: "text/plain", body: `{"name":"a"}`,
			wantStatus: 415, wantType: "unsupported-media-type", wantDetail: `"text/plain"`,
		},
		{
			name: "form", contentType: "application/x-www-form-urlencoded", body: `name=a`,
			wantStatus: 415, wantType: "unsupported-media-type", wantDetail: `"application/x-www-form-urlencoded"`,
		},
		{
			name: "non-utf-8 charset", contentType: "application/json; charset=latin1", body: `{"name":"a"}`,
			wantStatus: 415, wantType: "unsupported-media-type", wantDetail: `"latin1"`,
		},
		{
			name: "malformed content type", contentType: "application/json; =", body: `{}`,
			wantStatus: 415, wantType: "unsupported-media-type", wantDetail: "malformed Content-Type",
		},
		{
			name: "empty body", contentType: "application/json", body: ``,
			wantStatus: 400, wantType: "bad-request", wantDetail: "request body is empty",
		},
		{
			name: "empty body without content type", body: ``,
			wantStatus: 400, wantType: "bad-request", wantDetail: "request body is empty",
		},
		{
			name: "whitespace-only body", contentType: "application/json", body: " \n\t",
			wantStatus: 400, wantType: "bad-request", wantDetail: "request body is empty",
		},
		{
			name: "malformed JSON", contentType: "application/json", body: `{"name": }`,
			wantStatus: 400, wantType: "bad-request", wantDetail: "line 1, column 10 (byte offset 9): invalid character '}'",
		},
		{
			name: "malformed JSON on line 3", contentType: "application/json", body: "{\n  \"name\": \"a\",\n  \"priority\": 1,,\n}",
			wantStatus: 400, wantType: "bad-request", wantDetail: "line 3, column 17 (byte offset 33)",
		},
		{
			name: "truncated JSON", contentType: "application/json", body: `{"name": "a"`,
			wantStatus: 400, wantType: "bad-request", wantDetail: "ends at line 1, column 13 (byte offset 12)",
		},
		{
			name: "trailing value", contentType: "application/json", body: `{} {}`,
			wantStatus: 400, wantType: "bad-request", wantDetail: "unexpected data after the JSON value at line 1, column 4 (byte offset 3)",
		},
		{
			name: "trailing garbage", contentType: "application/json", body: `{"name":"a"}x`,
			wantStatus: 400, wantType: "bad-request", wantDetail: "unexpected data after the JSON value",
		},
		{
			name: "invalid UTF-8", contentType: "application/json", body: "{\"name\":\"a\xffb\"}",
			wantStatus: 400, wantType: "bad-request", wantDetail: "not valid UTF-8 at line 1, column 11 (byte offset 10)",
		},
		{
			// PostgreSQL stores neither NUL nor half a surrogate pair, in
			// text or jsonb: refused here, not by a failing INSERT (500).
			name: "NUL escape", contentType: "application/json", body: `{"name":"a\u0000b"}`,
			wantStatus: 400, wantType: "bad-request", wantDetail: `\u0000 (a NUL character, which cannot be stored) at line 1, column 11 (byte offset 10)`,
		},
		{
			name: "NUL escape inside a map of any", contentType: "application/json", body: `{"params":{"k":["\\","\u0000"]}}`,
			wantStatus: 400, wantType: "bad-request", wantDetail: `\u0000`,
		},
		{
			name: "lone high surrogate", contentType: "application/json", body: `{"name":"\ud800x"}`,
			wantStatus: 400, wantType: "bad-request", wantDetail: `\ud800, half of a UTF-16 surrogate pair`,
		},
		{
			name: "lone low surrogate", contentType: "application/json", body: `{"params":{"\udc00":1}}`,
			wantStatus: 400, wantType: "bad-request", wantDetail: `\udc00`,
		},
		{name: "surrogate pair", contentType: "application/json", body: `{"name":"\ud83d\ude00 \\u0000 \u00e9"}`, wantStatus: 200},
		{
			name: "duplicate key", contentType: "application/json", body: `{"name":"a","priority":1,"name":"b"}`,
			wantStatus: 400, wantType: "bad-request", wantDetail: `duplicate key "name"`, wantPointer: "/name",
		},
		{
			name: "duplicate key deep inside", contentType: "application/json", body: `{"params":{"x":[{},{"a":1,"b":{},"a":2}]}}`,
			wantStatus: 400, wantType: "bad-request", wantDetail: `duplicate key "a"`, wantPointer: "/params/x/1/a",
		},
		{name: "same key in sibling objects", contentType: "application/json", body: `{"params":{"x":[{"a":1},{"a":2}],"y":{"a":3}}}`, wantStatus: 200},
		{
			name: "unknown top-level field", contentType: "application/json", body: `{"name":"a","nmae":"b"}`,
			wantStatus: 422, wantType: "validation-failed", wantDetail: `unknown field "nmae" at /nmae`,
			wantPointer: "/nmae", wantFieldText: `unknown field "nmae"`,
		},
		{
			name: "unknown field in nested object", contentType: "application/json", body: `{"limits":{"max_retries":1,"foo":2}}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/limits/foo", wantFieldText: `unknown field "foo"`,
		},
		{
			name: "unknown field in array element", contentType: "application/json",
			body:       `{"step_templates":[{"name":"a"},{"name":"b"},{"name":"c"},{"nmae":"d"}]}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/step_templates/3/nmae", wantFieldText: `unknown field "nmae"`,
		},
		{
			// The same key is legal earlier inside an `any` map; the pointer must skip it.
			name: "unknown field whose name appears in a map first", contentType: "application/json",
			body:       `{"params":{"bogus":1},"bogus":2}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/bogus", wantFieldText: `unknown field "bogus"`,
		},
		{
			name: "field excluded with json:\"-\" is unknown", contentType: "application/json", body: `{"Secret":"x"}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/Secret", wantFieldText: `unknown field "Secret"`,
		},
		{
			name: "unknown field name escaped in pointer", contentType: "application/json", body: `{"a/b~c":1}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/a~1b~0c", wantFieldText: `unknown field "a/b~c"`,
		},
		{
			name: "string for integer", contentType: "application/json", body: `{"priority": "x"}`,
			wantStatus: 422, wantType: "validation-failed", wantDetail: "wrong type at /priority",
			wantPointer: "/priority", wantFieldText: "expected integer, got string",
		},
		{
			name: "fraction for integer", contentType: "application/json", body: `{"priority": 1.5}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/priority", wantFieldText: "expected integer, got number 1.5",
		},
		{
			name: "boolean for string", contentType: "application/json", body: `{"name": true}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/name", wantFieldText: "expected string, got boolean",
		},
		{
			name: "object for string", contentType: "application/json", body: `{"name": {"first": "a"}}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/name", wantFieldText: "expected string, got object",
		},
		{
			name: "object for array", contentType: "application/json", body: `{"step_templates": {}}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/step_templates", wantFieldText: "expected array, got object",
		},
		{
			name: "wrong type in array element", contentType: "application/json",
			body:       `{"step_templates":[{"name":"a","timeout_seconds":1},{"name":"b","timeout_seconds":"10s"}]}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/step_templates/1/timeout_seconds", wantFieldText: "expected integer, got string",
		},
		{
			name: "wrong type in map value", contentType: "application/json", body: `{"labels":{"team":"core","tier":1}}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/labels/tier", wantFieldText: "expected string, got number",
		},
		{
			name: "negative for unsigned", contentType: "application/json", body: `{"limits":{"max_retries":-1}}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/limits/max_retries", wantFieldText: "expected non-negative integer, got number -1",
		},
		{
			name: "number for text-unmarshaled uuid", contentType: "application/json", body: `{"id": 7}`,
			wantStatus: 422, wantType: "validation-failed",
			wantPointer: "/id", wantFieldText: "expected string, got number",
		},
		{
			name: "invalid uuid string", contentType: "application/json", body: `{"id": "nope"}`,
			wantStatus: 422, wantType: "validation-failed", wantDetail: "invalid value in request body: invalid UUID length: 4",
		},
		{
			name: "over limit by Content-Length", contentType: "application/json",
			body:       `{"name":"` + strings.Repeat("a", decodeTestLimit) + `"}`,
			wantStatus: 413, wantType: "payload-too-large", wantDetail: "exceeds the limit of 256 bytes",
		},
		{
			name: "over limit while reading a chunked body", contentType: "application/json", chunked: true,
			body:       `{"name":"` + strings.Repeat("a", decodeTestLimit) + `"}`,
			wantStatus: 413, wantType: "payload-too-large", wantDetail: "request body exceeds the limit of 256 bytes",
		},
	}

	router := newDecodeRouter(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			req := httptest.NewRequest(http.MethodPost, "/tasker/workflows", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			router.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantType == "" {
				if ct := rec.Header().Get("Content-Type"); ct != ContentTypeJSON {
					t.Fatalf("Content-Type = %q, want %q", ct, ContentTypeJSON)
				}
				return
			}
			p := readProblem(t, rec.Result())
			if want := problemTypePrefix + tt.wantType; p.Type != want {
				t.Errorf("type = %q, want %q", p.Type, want)
			}
			if p.Status != tt.wantStatus {
				t.Errorf("problem status = %d, want %d", p.Status, tt.wantStatus)
			}
			if p.Instance != "/tasker/workflows" {
				t.Errorf("instance = %q, want the request path", p.Instance)
			}
			if p.RequestID == "" || p.RequestID != rec.Header().Get(HeaderRequestID) {
				t.Errorf("request_id = %q, want the X-Request-ID %q", p.RequestID, rec.Header().Get(HeaderRequestID))
			}
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.wantDetail)
			}
			if tt.wantPointer == "" {
				if len(p.Errors) != 0 {
					t.Errorf("errors = %+v, want none", p.Errors)
				}
				return
			}
			if len(p.Errors) != 1 {
				t.Fatalf("errors = %+v, want exactly one", p.Errors)
			}
			if p.Errors[0].Pointer != tt.wantPointer {
				t.Errorf("pointer = %q, want %q", p.Errors[0].Pointer, tt.wantPointer)
			}
			if !strings.Contains(p.Errors[0].Detail, tt.wantFieldText) {
				t.Errorf("field detail = %q, want it to contain %q", p.Errors[0].Detail, tt.wantFieldText)
			}
		})
	}
}

func TestDecodeJSONFillsDestination(t *testing.T) {
	t.Parallel()

	body := `{"name":"nightly","priority":3,"labels":{"team":"core"},"step_templates":[{"name":"a","timeout_seconds":5}]}`
	req := httptest.NewRequest(http.MethodPost, "/tasker/workflows", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	var got testCreateWorkflow
	if err := DecodeJSON(req, &got); err != nil {
		t.Fatalf("DecodeJSON: %v", err)
	}
	if got.Name != "nightly" || got.Priority != 3 || got.Labels["team"] != "core" ||
		len(got.StepTemplates) != 1 || got.StepTemplates[0].TimeoutSeconds != 5 {
		t.Fatalf("decoded %+v", got)
	}
}

func TestDecodeJSONNonPointerIsAServerFault(t *testing.T) {
	t.Parallel()

	req := httptest.NewRequest(http.MethodPost, "/tasker/workflows", strings.NewReader(`{}`))
	err := DecodeJSON(req, testCreateWorkflow{})
	if err == nil {
		t.Fatal("DecodeJSON into a non-pointer returned nil")
	}
	if _, ok := errors.AsType[*Problem](err); ok {
		t.Fatalf("err = %v is a *Problem; a programming fault must become a 500, not blame the client", err)
	}
}
