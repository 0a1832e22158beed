package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
)

// Log keys written by this package, shared so log queries can rely on them.
const (
	LogKeyComponent  = "component"
	LogKeyRequestID  = "request_id"
	LogKeyMethod     = "method"
	LogKeyRoute      = "route"
	LogKeyPath       = "path"
	LogKeyStatus     = "status"
	LogKeyBytes      = "bytes"
	LogKeyDurationMS = "duration_ms"
	LogKeyError      = "error"
	LogKeyPanic      = "panic"
	LogKeyStack      = "stack"
)

// componentName tags lines logged through slog.Default. Everywhere else the
// caller's logger is expected to carry the component already (api.New adds
// it), so the middleware does not add it twice.
const componentName = "api"

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-ID"

// maxRequestIDLen bounds a client-supplied id so it cannot bloat every log line.
const maxRequestIDLen = 128

// healthPathPrefix marks probe traffic, logged at DEBUG because probes arrive
// every few seconds and say nothing about users.
const healthPathPrefix = "/tasker/health"

type requestIDKey struct{}

// RequestID gives every request an id: the client's X-Request-ID when it is
// 1–128 characters of [A-Za-z0-9._:-], a fresh UUIDv7 otherwise. The id is
// echoed in the response header and stored in the context for
// RequestIDFromContext. Anything else is replaced rather than rejected, since
// the id only exists to correlate logs and must never fail a request; the
// character set keeps it safe to put in logs and headers.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			// UUIDv7 sorts by time, which keeps ids of one incident together.
			// NewV7 fails only if crypto/rand does, and since Go 1.24 that
			// crashes the program instead of returning an error.
			id = uuid.Must(uuid.NewV7()).String()
		}
		w.Header().Set(HeaderRequestID, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// RequestIDFromContext returns the id RequestID stored, or "" outside it.
func RequestIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// BodyLimit caps request bodies at maxBytes, which must be positive. A
// declared Content-Length over the cap is refused with 413 before the handler
// runs; a chunked body is cut off by http.MaxBytesReader, whose error
// DecodeJSON turns into the same 413.
func BodyLimit(maxBytes int64) func(http.Handler) http.Handler {
	if maxBytes <= 0 {
		panic(fmt.Sprintf("api.BodyLimit: maxBytes must be positive, got %d", maxBytes))
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > maxBytes {
				WriteProblem(w, r, PayloadTooLarge(fmt.Sprintf(
					"request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, maxBytes)))
				return
			}
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, maxBytes)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Recoverer turns a panicking handler into a logged 500. The value and stack
// are logged at ERROR with the request id, and an Internal problem is written
// if the handler had not started its response. If it had, the status is
// already on the wire, so Recoverer aborts the response by panicking with
// http.ErrAbortHandler: a cut connection is honest, a 200 that ends early is
// not. A panic with http.ErrAbortHandler itself passes through untouched, as
// net/http expects.
func Recoverer(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := recordResponse(w)
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler { //nolint:errorlint // net/http compares the sentinel the same way
					panic(v)
				}
				logger.LogAttrs(r.Context(), slog.LevelError, "handler panicked",
					slog.String(LogKeyRequestID, RequestIDFromContext(r.Context())),
					slog.String(LogKeyMethod, r.Method),
					slog.String(LogKeyPath, r.URL.Path),
					slog.String(LogKeyPanic, fmt.Sprint(v)),
					slog.String(LogKeyStack, string(debug.Stack())),
				)
				if rec.wroteHeader {
					panic(http.ErrAbortHandler)
				}
				WriteProblem(rec, r, Internal())
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

// AccessLog logs one line per request when it completes: at INFO, or DEBUG
// under /tasker/health. The route is chi's pattern
// ("/tasker/workflows/{id}") so lines group by endpoint; the raw path is
// logged beside it. Install it with Use on the root chi router, outside
// Recoverer, so the route is known and recovered panics are logged as 500s.
// A request aborted by a panic that escapes is logged at WARN.
func AccessLog(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := recordResponse(w)
			completed := false
			defer func() {
				level, msg := slog.LevelInfo, "request"
				if p := r.URL.Path; p == healthPathPrefix || strings.HasPrefix(p, healthPathPrefix+"/") {
					level = slog.LevelDebug
				}
				status := rec.status
				switch {
				case !completed:
					level, msg = slog.LevelWarn, "request aborted"
				case status == 0:
					status = http.StatusOK // net/http's implicit status for a handler that wrote nothing
				}
				var route string
				if rctx := chi.RouteContext(r.Context()); rctx != nil {
					route = rctx.RoutePattern()
				}
				logger.LogAttrs(r.Context(), level, msg,
					slog.String(LogKeyMethod, r.Method),
					slog.String(LogKeyRoute, route),
					slog.String(LogKeyPath, r.URL.Path),
					slog.Int(LogKeyStatus, status),
					slog.Int64(LogKeyBytes, rec.bytes),
					slog.Float64(LogKeyDurationMS, float64(time.Since(start).Microseconds())/1000),
					slog.String(LogKeyRequestID, RequestIDFromContext(r.Context())),
				)
			}()
			next.ServeHTTP(rec, r)
			completed = true
		})
	}
}

// responseRecorder remembers the status and size of a response for
// AccessLog and whether it has started for Recoverer.
type responseRecorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

// recordResponse reuses an enclosing recorder so stacked middleware agree
// on what was written.
func recordResponse(w http.ResponseWriter) *responseRecorder {
	if rec, ok := w.(*responseRecorder); ok {
		return rec
	}
	return &responseRecorder{ResponseWriter: w}
}

func (rw *responseRecorder) WriteHeader(code int) {
	// 1xx responses other than 101 are interim; the final status follows.
	if !rw.wroteHeader && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) {
		rw.status, rw.wroteHeader = code, true
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *responseRecorder) Write(b []byte) (int, error) {
	if !rw.wroteHeader {
		rw.status, rw.wroteHeader = http.StatusOK, true
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

// Flush is here because handlers streaming events assert http.Flusher
// directly; http.ResponseController finds the rest through Unwrap.
func (rw *responseRecorder) Flush() {
	if !rw.wroteHeader {
		rw.status, rw.wroteHeader = http.StatusOK, true
	}
	_ = http.NewResponseController(rw.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rw *responseRecorder) Unwrap() http.ResponseWriter {
	return rw.ResponseWriter
}
