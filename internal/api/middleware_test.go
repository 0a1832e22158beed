package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
)

// logBuffer collects JSON log lines; handlers run on server goroutines, so it locks.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records parses every line logged so far.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	data := bytes.Clone(b.buf.Bytes())
	b.mu.Unlock()
	var out []map[string]any
	for line := range bytes.Lines(data) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

func (b *logBuffer) recordsAt(t *testing.T, level string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, rec := range b.records(t) {
		if rec[slog.LevelKey] == level {
			out = append(out, rec)
		}
	}
	return out
}

func newTestLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	t.Helper()
	buf := &logBuffer{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func TestRequestID(t *testing.T) {
	t.Parallel()

	longest := strings.Repeat("a", 128)
	tests := []struct {
		name     string
		header   *string // nil sends no header
		wantEcho bool
	}{
		{name: "absent", header: nil},
		{name: "empty", header: ptr("")},
		{name: "valid is echoed", header: ptr("Ab9._:-z"), wantEcho: true},
		{name: "uuid is echoed", header: ptr("0190b6c5-7d7e-7cc1-8a51-3c1d7c0e8f11"), wantEcho: true},
		{name: "128 characters is echoed", header: ptr(longest), wantEcho: true},
		{name: "129 characters is replaced", header: ptr(longest + "a")},
		{name: "space is replaced", header: ptr("a b")},
		{name: "slash is replaced", header: ptr("a/b")},
		{name: "quotes are replaced", header: ptr(`x","admin":true`)},
		{name: "non-ASCII is replaced", header: ptr("héllo")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			var seen string
			r := chi.NewRouter()
			r.Use(RequestID)
			r.Get("/tasker/x", func(w http.ResponseWriter, r *http.Request) {
				seen = RequestIDFromContext(r.Context())
			})
			req := httptest.NewRequest(http.MethodGet, "/tasker/x", nil)
			if tt.header != nil {
				req.Header.Set(HeaderRequestID, *tt.header)
			}
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)

			got := rec.Header().Get(HeaderRequestID)
			if got != seen {
				t.Fatalf("response header %q differs from context %q", got, seen)
			}
			if tt.wantEcho {
				if got != *tt.header {
					t.Fatalf("id = %q, want the client's %q", got, *tt.header)
				}
				return
			}
			id, err := uuid.Parse(got)
			if err != nil || id.Version() != 7 {
				t.Fatalf("id = %q, want a generated UUIDv7 (parse error %v)", got, err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRequestIDFromContextOutsideMiddleware(t *testing.T) {
	t.Parallel()
	if got := RequestIDFromContext(t.Context()); got != "" {
		t.Fatalf("RequestIDFromContext = %q, want empty", got)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()

	const limit = 16
	var handlerRan sync.Map // request path -> true
	logger, _ := newTestLogger(t)
	r := chi.NewRouter()
	r.Use(RequestID, BodyLimit(limit))
	r.Post("/tasker/{case}", func(w http.ResponseWriter, r *http.Request) {
		handlerRan.Store(r.URL.Path, true)
		var v map[string]string
		if err := DecodeJSON(r, &v); err != nil {
			WriteError(w, r, logger, err)
			return
		}
		WriteJSON(w, http.StatusOK, v)
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	fits := `{"a":"0123456"}` // 15 bytes
	tooBig := `{"a":"0123456789abcdef"}`
	tests := []struct {
		name        string
		body        string
		chunked     bool
		wantStatus  int
		wantHandler bool
		wantDetail  string
	}{
		{name: "fits", body: fits, wantStatus: 200, wantHandler: true},
		{name: "fits-chunked", body: fits, chunked: true, wantStatus: 200, wantHandler: true},
		{
			name: "content-length", body: tooBig, wantStatus: 413, wantHandler: false,
			wantDetail: "request body of 24 bytes exceeds the limit of 16 bytes",
		},
		{
			name: "chunked", body: tooBig, chunked: true, wantStatus: 413, wantHandler: true,
			wantDetail: "request body exceeds the limit of 16 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				// An opaque reader hides the length, so the client sends chunks.
				body = io.MultiReader(body)
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/tasker/"+tt.name, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			defer resp.Body.Close()

			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if _, ran := handlerRan.Load("/tasker/" + tt.name); ran != tt.wantHandler {
				t.Errorf("handler ran = %v, want %v", ran, tt.wantHandler)
			}
			if tt.wantStatus == http.StatusOK {
				return
			}
			p := readProblem(t, resp)
			if p.Type != problemTypePrefix+"payload-too-large" || !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("problem %+v, want payload-too-large with %q", p, tt.wantDetail)
			}
		})
	}
}

func TestBodyLimitRejectsNonPositive(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("BodyLimit(0) did not panic")
		}
	}()
	BodyLimit(0)
}

// newStack builds the middleware the way a server should: request id first,
// the access log outside the recoverer so recovered panics are logged as 500s.
func newStack(logger *slog.Logger, routes func(r chi.Router)) http.Handler {
	r := chi.NewRouter()
	r.NotFound(NotFoundHandler())
	r.MethodNotAllowed(MethodNotAllowedHandler())
	r.Use(RequestID, AccessLog(logger), Recoverer(logger))
	r.Route("/tasker", routes)
	return r
}

func TestRecovererAnswersPanicWith500(t *testing.T) {
	t.Parallel()

	logger, logs := newTestLogger(t)
	h := newStack(logger, func(r chi.Router) {
		r.Get("/boom", func(http.ResponseWriter, *http.Request) {
			panic("engine exploded: secret-detail")
		})
	})
	srv := httptest.NewUnstartedServer(h)
	// net/http logs aborted handlers here; the test wants it silent.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/tasker/boom", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderRequestID, "boom-1")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("the connection was dropped instead of answered: %v", err)
	}
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", resp.StatusCode)
	}
	p := readProblem(t, resp)
	if p.Type != problemTypePrefix+"internal" || p.RequestID != "boom-1" {
		t.Errorf("problem %+v, want internal with request_id boom-1", p)
	}
	if strings.Contains(p.Detail, "secret-detail") {
		t.Errorf("detail %q leaks the panic value", p.Detail)
	}

	errorLines := logs.recordsAt(t, "ERROR")
	if len(errorLines) != 1 {
		t.Fatalf("ERROR lines = %v, want one", errorLines)
	}
	line := errorLines[0]
	if line[LogKeyRequestID] != "boom-1" || line[LogKeyPanic] != "engine exploded: secret-detail" {
		t.Errorf("panic line %v, want request_id and panic value", line)
	}
	stack, _ := line[LogKeyStack].(string)
	if !strings.Contains(stack, "goroutine") || !strings.Contains(stack, "middleware_test.go") {
		t.Errorf("stack %q does not reach the panicking handler", stack)
	}
}

func TestRecovererRepanicsAbortHandler(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantLogged bool
		wantStatus int // what the client had already been sent
	}{
		{
			name:    "ErrAbortHandler passes through",
			handler: func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) },
		},
		{
			// The 200 is on the wire; only cutting the connection tells the client.
			name: "panic after the response started aborts it",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(`{"items":[`))
				panic("half way")
			},
			wantLogged: true,
			wantStatus: http.StatusOK,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			logger, logs := newTestLogger(t)
			h := RequestID(Recoverer(logger)(tt.handler))
			rec := httptest.NewRecorder()
			func() {
				defer func() {
					if v := recover(); v != http.ErrAbortHandler { //nolint:errorlint // net/http compares the sentinel by identity
						t.Fatalf("recovered %v, want http.ErrAbortHandler", v)
					}
				}()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/tasker/x", nil))
			}()

			if got := len(logs.recordsAt(t, "ERROR")); (got == 1) != tt.wantLogged {
				t.Errorf("ERROR lines = %d, want logged = %v", got, tt.wantLogged)
			}
			if tt.wantStatus != 0 && rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want the %d already sent", rec.Code, tt.wantStatus)
			}
			if strings.Contains(rec.Body.String(), "problem") {
				t.Errorf("body %q: no problem may be appended to a started response", rec.Body)
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		method     string
		path       string
		wantLevel  string
		wantRoute  string
		wantStatus int
		wantBytes  int
	}{
		{
			name: "route pattern, not raw path", method: http.MethodGet, path: "/tasker/workflows/8f1c",
			wantLevel: "INFO", wantRoute: "/tasker/workflows/{id}", wantStatus: 200, wantBytes: len(`{"id":"8f1c"}` + "\n"),
		},
		{
			name: "health probes at debug", method: http.MethodGet, path: "/tasker/health/live",
			wantLevel: "DEBUG", wantRoute: "/tasker/health/live", wantStatus: 200, wantBytes: 0,
		},
		{
			name: "handler that writes nothing", method: http.MethodDelete, path: "/tasker/workflows/8f1c",
			wantLevel: "INFO", wantRoute: "/tasker/workflows/{id}", wantStatus: 200, wantBytes: 0,
		},
		{
			name: "recovered panic", method: http.MethodPost, path: "/tasker/workflows/8f1c/boom",
			wantLevel: "INFO", wantRoute: "/tasker/workflows/{id}/boom", wantStatus: 500,
		},
		{
			name: "not found", method: http.MethodGet, path: "/tasker/nope",
			wantLevel: "INFO", wantStatus: 404,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			logger, logs := newTestLogger(t)
			h := newStack(logger, func(r chi.Router) {
				r.Get("/health/live", func(http.ResponseWriter, *http.Request) {})
				r.Get("/workflows/{id}", func(w http.ResponseWriter, r *http.Request) {
					WriteJSON(w, http.StatusOK, map[string]string{"id": chi.URLParam(r, "id")})
				})
				r.Delete("/workflows/{id}", func(http.ResponseWriter, *http.Request) {})
				r.Post("/workflows/{id}/boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
			})
			req := httptest.NewRequest(tt.method, tt.path, nil)
			req.Header.Set(HeaderRequestID, "log-1")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			var lines []map[string]any
			for _, l := range logs.records(t) {
				if _, ok := l[LogKeyDurationMS]; ok {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("access log lines = %v, want exactly one", lines)
			}
			line := lines[0]
			want := map[string]any{
				slog.LevelKey:   tt.wantLevel,
				LogKeyMethod:    tt.method,
				LogKeyPath:      tt.path,
				LogKeyStatus:    float64(tt.wantStatus),
				LogKeyRequestID: "log-1",
			}
			if tt.wantRoute != "" {
				want[LogKeyRoute] = tt.wantRoute
			}
			if tt.wantBytes != 0 || tt.wantStatus == http.StatusOK {
				want[LogKeyBytes] = float64(tt.wantBytes)
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("%s = %v (%T), want %v", k, line[k], line[k], v)
				}
			}
			if d, ok := line[LogKeyDurationMS].(float64); !ok || d < 0 {
				t.Errorf("duration_ms = %v, want a non-negative number", line[LogKeyDurationMS])
			}
			if float64(rec.Code) != want[LogKeyStatus] {
				t.Errorf("logged status %v but the client got %d", want[LogKeyStatus], rec.Code)
			}
		})
	}
}

func TestResponseRecorderKeepsFlusher(t *testing.T) {
	t.Parallel()

	logger, _ := newTestLogger(t)
	var isFlusher bool
	h := AccessLog(logger)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var f http.Flusher
		f, isFlusher = w.(http.Flusher)
		if isFlusher {
			f.Flush()
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/tasker/events", nil))
	if !isFlusher || !rec.Flushed {
		t.Fatalf("flusher = %v, flushed = %v; streaming handlers need Flush to reach the connection", isFlusher, rec.Flushed)
	}
}
