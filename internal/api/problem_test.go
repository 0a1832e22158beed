package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/store"
)

// readProblem asserts that resp is a problem document and decodes it.
func readProblem(t *testing.T, resp *http.Response) Problem {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ContentTypeProblem {
		t.Fatalf("Content-Type = %q, want %q", ct, ContentTypeProblem)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	var p Problem
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields() // the wire format is exactly the struct
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode problem %s: %v", body, err)
	}
	if p.Status != resp.StatusCode {
		t.Fatalf("problem status %d differs from response status %d", p.Status, resp.StatusCode)
	}
	return p
}

func TestConstructors(t *testing.T) {
	t.Parallel()

	fe := FieldError{Pointer: "/name", Detail: "required"}
	tests := []struct {
		name       string
		p          *Problem
		wantStatus int
		wantSlug   string
	}{
		{"BadRequest", BadRequest("d", fe), 400, "bad-request"},
		{"ValidationFailed", ValidationFailed("d", fe), 422, "validation-failed"},
		{"NotFound", NotFound("d"), 404, "not-found"},
		{"MethodNotAllowed", MethodNotAllowed("d"), 405, "method-not-allowed"},
		{"UnsupportedMediaType", UnsupportedMediaType("d"), 415, "unsupported-media-type"},
		{"PayloadTooLarge", PayloadTooLarge("d"), 413, "payload-too-large"},
		{"Conflict", Conflict("d"), 409, "conflict"},
		{"Unavailable", Unavailable("d"), 503, "unavailable"},
		{"Internal", Internal(), 500, "internal"},
	}
	titles := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.p.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d", tt.p.Status, tt.wantStatus)
			}
			if want := "urn:taskerd:problem:" + tt.wantSlug; tt.p.Type != want {
				t.Errorf("type = %q, want %q", tt.p.Type, want)
			}
			if tt.p.Title == "" || tt.p.Detail == "" {
				t.Errorf("title %q and detail %q must both be set", tt.p.Title, tt.p.Detail)
			}
			if !strings.Contains(tt.p.Error(), fmt.Sprint(tt.wantStatus)) || !strings.Contains(tt.p.Error(), tt.p.Detail) {
				t.Errorf("Error() = %q, want status and detail in it", tt.p.Error())
			}
		})
		if titles[tt.p.Title] {
			t.Errorf("title %q used twice; titles identify the type", tt.p.Title)
		}
		titles[tt.p.Title] = true
	}
	if got := BadRequest("d", fe).Errors; len(got) != 1 || got[0] != fe {
		t.Errorf("BadRequest errors = %+v, want [%+v]", got, fe)
	}
}

func TestWriteProblem(t *testing.T) {
	t.Parallel()

	shared := Conflict(`workflow "<nightly>" & friends already exists`)
	r := chi.NewRouter()
	r.Use(RequestID)
	r.Get("/tasker/workflows/{id}", func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, shared)
	})
	r.Get("/tasker/explicit", func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, &Problem{Title: "Teapot", Status: http.StatusTeapot, Instance: "/elsewhere", RequestID: "given"})
	})

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/tasker/workflows/42", nil)
	req.Header.Set(HeaderRequestID, "req-1")
	r.ServeHTTP(rec, req)

	if rec.Code != http.StatusConflict {
		t.Fatalf("status = %d, want 409", rec.Code)
	}
	if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
	if !strings.Contains(rec.Body.String(), `\"<nightly>\" & friends`) {
		t.Errorf("body %s: HTML must not be escaped", rec.Body)
	}
	p := readProblem(t, rec.Result())
	if p.Instance != "/tasker/workflows/42" || p.RequestID != "req-1" {
		t.Errorf("instance %q, request_id %q; want the path and the X-Request-ID", p.Instance, p.RequestID)
	}
	if shared.Instance != "" || shared.RequestID != "" {
		t.Errorf("WriteProblem modified its argument: %+v", shared)
	}

	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/tasker/explicit", nil))
	p = readProblem(t, rec.Result())
	if p.Type != "about:blank" || p.Instance != "/elsewhere" || p.RequestID != "given" || p.Status != http.StatusTeapot {
		t.Errorf("explicit problem came back as %+v; set fields must be kept and Type defaulted", p)
	}
}

func TestWriteJSON(t *testing.T) {
	t.Parallel()

	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusCreated, map[string]string{"name": "a<b>&c"})
	if rec.Code != http.StatusCreated {
		t.Fatalf("status = %d, want 201", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != ContentTypeJSON {
		t.Fatalf("Content-Type = %q, want %q", ct, ContentTypeJSON)
	}
	if got, want := rec.Body.String(), "{\"name\":\"a<b>&c\"}\n"; got != want {
		t.Fatalf("body = %q, want %q", got, want)
	}
}

func TestWriteJSONUnencodableValueIsInternal(t *testing.T) {
	t.Parallel()

	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusOK, map[string]float64{"ratio": math.NaN()})
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500: a value that cannot be encoded must not become a 200", rec.Code)
	}
	p := readProblem(t, rec.Result())
	if p.Type != problemTypePrefix+"internal" {
		t.Fatalf("type = %q, want internal", p.Type)
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		err         error
		cancelReq   bool // the client has gone away
		wantStatus  int
		wantSlug    string // "" when no body is expected
		wantDetail  string
		wantLogged  bool
		notInBody   string
		wantNoBytes bool
	}{
		{
			name: "problem wrapped with %w", err: fmt.Errorf("create workflow: %w", Conflict("workflow exists")),
			wantStatus: 409, wantSlug: "conflict", wantDetail: "workflow exists",
		},
		{
			name: "plain error", err: errors.New("pq: password authentication failed for user taskerd"),
			wantStatus: 500, wantSlug: "internal", wantDetail: "quote the request_id",
			wantLogged: true, notInBody: "password",
		},
		{
			name: "deadline exceeded", err: fmt.Errorf("load steps: %w", context.DeadlineExceeded),
			wantStatus: 503, wantSlug: "unavailable", wantDetail: "request timed out",
		},
		{
			name: "canceled while the client waits", err: fmt.Errorf("load steps: %w", context.Canceled),
			wantStatus: 503, wantSlug: "unavailable", wantDetail: "canceled",
		},
		{
			name: "database unavailable", err: fmt.Errorf("list tasks: %w: connection refused", store.ErrUnavailable),
			wantStatus: 503, wantSlug: "unavailable", wantDetail: "retry later", notInBody: "connection refused",
		},
		{
			name: "canceled because the client left", err: fmt.Errorf("load steps: %w", context.Canceled), cancelReq: true,
			wantStatus: statusClientClosedRequest, wantNoBytes: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			logger, logs := newTestLogger(t)
			r := chi.NewRouter()
			r.Use(RequestID)
			r.Get("/tasker/x", func(w http.ResponseWriter, r *http.Request) {
				WriteError(w, r, logger, tt.err)
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelReq {
				cancel()
			}
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/tasker/x", nil)
			req.Header.Set(HeaderRequestID, "req-"+strings.ReplaceAll(tt.name, " ", "-"))
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantNoBytes {
				if rec.Body.Len() != 0 {
					t.Errorf("body = %q, want none for a client that left", rec.Body)
				}
			} else {
				if tt.notInBody != "" && strings.Contains(rec.Body.String(), tt.notInBody) {
					t.Errorf("body %s leaks the cause", rec.Body)
				}
				p := readProblem(t, rec.Result())
				if p.Type != problemTypePrefix+tt.wantSlug {
					t.Errorf("type = %q, want slug %q", p.Type, tt.wantSlug)
				}
				if !strings.Contains(p.Detail, tt.wantDetail) {
					t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.wantDetail)
				}
			}
			// Every 503 says when to come back; nothing else does.
			if got, want := rec.Header().Get("Retry-After"), map[bool]string{true: UnavailableRetryAfter}[tt.wantStatus == 503]; got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}

			errorLines := logs.recordsAt(t, "ERROR")
			if !tt.wantLogged {
				if len(errorLines) != 0 {
					t.Fatalf("logged %v; only unexpected errors belong at ERROR", errorLines)
				}
				return
			}
			if len(errorLines) != 1 {
				t.Fatalf("ERROR lines = %v, want exactly one", errorLines)
			}
			line := errorLines[0]
			if line[LogKeyRequestID] != req.Header.Get(HeaderRequestID) {
				t.Errorf("logged request_id %v, want %q", line[LogKeyRequestID], req.Header.Get(HeaderRequestID))
			}
			if line[LogKeyError] != tt.err.Error() {
				t.Errorf("logged error %v, want %q", line[LogKeyError], tt.err.Error())
			}
		})
	}
}

func TestNotFoundAndMethodNotAllowedThroughChi(t *testing.T) {
	t.Parallel()

	noop := func(http.ResponseWriter, *http.Request) {}
	passThrough := func(next http.Handler) http.Handler { return next }
	steps := chi.NewRouter() // mounted separately, as a resource file would
	steps.Get("/", noop)
	steps.With(passThrough).Post("/{step:[0-9]+}/retry", noop)

	r := chi.NewRouter()
	// Set before any route so mounted sub-routers inherit them, as in New.
	r.NotFound(NotFoundHandler())
	r.MethodNotAllowed(MethodNotAllowedHandler())
	r.Use(RequestID)
	r.Route("/tasker", func(r chi.Router) {
		r.Get("/health/live", noop)
		r.Route("/workflows", func(r chi.Router) {
			r.Get("/", noop)
			r.Post("/", noop)
			r.Group(func(r chi.Router) {
				r.Use(passThrough)
				r.Get("/{id}", noop)
				r.Delete("/{id}", noop)
				r.Put("/{id}", noop)
			})
			r.Mount("/{id}/steps", steps)
		})
		r.Handle("/metrics", http.HandlerFunc(noop))
	})

	tests := []struct {
		method     string
		path       string
		wantStatus int
		wantAllow  string
		wantDetail string
	}{
		{http.MethodGet, "/tasker/nope", 404, "", "no resource at /tasker/nope"},
		{http.MethodGet, "/elsewhere", 404, "", "no resource at /elsewhere"},
		{http.MethodGet, "/tasker/workflows/42/runs", 404, "", "no resource at /tasker/workflows/42/runs"},
		{http.MethodPatch, "/tasker/workflows", 405, "GET, POST", "method PATCH is not allowed on /tasker/workflows; allowed: GET, POST"},
		{http.MethodPost, "/tasker/workflows/42", 405, "GET, PUT, DELETE", "allowed: GET, PUT, DELETE"},
		{http.MethodDelete, "/tasker/health/live", 405, "GET", "method DELETE is not allowed"},
		{http.MethodDelete, "/tasker/workflows/", 405, "GET, POST", "allowed: GET, POST"},
		{http.MethodPut, "/tasker/workflows/42/steps", 405, "GET", "allowed: GET"},
		{http.MethodGet, "/tasker/workflows/42/steps/7/retry", 405, "POST", "allowed: POST"},
		{http.MethodGet, "/tasker/workflows/42/steps/x/retry", 404, "", "no resource at"},
		{http.MethodPost, "/tasker/metrics", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()

			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))

			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if rec.Code == http.StatusOK {
				return // a Handle route takes every method
			}
			allow, hasAllow := rec.Header()["Allow"]
			if tt.wantStatus == http.StatusMethodNotAllowed {
				if !hasAllow || len(allow) != 1 || allow[0] != tt.wantAllow {
					t.Errorf("Allow = %q, want exactly [%q]", allow, tt.wantAllow)
				}
			} else if hasAllow {
				t.Errorf("Allow = %q on a %d", allow, rec.Code)
			}
			p := readProblem(t, rec.Result())
			if p.Instance != tt.path {
				t.Errorf("instance = %q, want %q", p.Instance, tt.path)
			}
			if p.RequestID == "" {
				t.Error("request_id is empty")
			}
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.wantDetail)
			}
		})
	}
}
