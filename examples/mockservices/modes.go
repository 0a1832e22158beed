package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Mode is how an endpoint misbehaves.
type Mode struct {
	// Mode is ok (default), flaky (500), slow (answers after Delay), 429 or
	// 503 (with Retry-After when RetryAfter is set), or down (the connection
	// is closed without an answer).
	Mode string `json:"mode"`
	// Failures is how many calls per Idempotency-Key misbehave before the
	// endpoint answers normally; 0 means every call. taskerd sends the same
	// key on every attempt of a step, so "failures: 2" fails a step's first
	// two attempts.
	Failures int `json:"failures,omitempty"`
	// RetryAfter is the Retry-After header of 429 and 503 answers, in
	// seconds; 0 sends none.
	RetryAfter int `json:"retry_after,omitempty"`
	// Delay is how long slow waits before answering (a Go duration).
	Delay string `json:"delay,omitempty"`
}

var modes = map[string]bool{"ok": true, "flaky": true, "slow": true, "429": true, "503": true, "down": true}

func (m Mode) validate() error {
	if !modes[m.Mode] {
		return fmt.Errorf("mode must be ok, flaky, slow, 429, 503 or down, got %q", m.Mode)
	}
	if m.Failures < 0 || m.RetryAfter < 0 {
		return fmt.Errorf("failures and retry_after cannot be negative")
	}
	if m.Mode == "slow" {
		if _, err := time.ParseDuration(m.Delay); err != nil {
			return fmt.Errorf("slow needs a delay such as 2s: %v", err)
		}
	}
	return nil
}

// Call is one request an endpoint received.
type Call struct {
	Endpoint       string    `json:"endpoint"`
	Method         string    `json:"method"`
	Path           string    `json:"path"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	CorrelationID  string    `json:"correlation_id,omitempty"`
	Status         int       `json:"status"`
	At             time.Time `json:"at"`
}

// Services holds the fake services' state: the modes, the call log and each
// example's data.
type Services struct {
	logger *slog.Logger

	mu       sync.Mutex
	modes    map[string]Mode
	attempts map[string]int // endpoint + idempotency key → calls seen
	calls    []Call
	shop     *shop
	users    *users
	refunds  *refunds
	orders   *fulfillment
	hooks    []map[string]any // webhook deliveries received
}

// New returns the services in their initial state.
func New(logger *slog.Logger) *Services {
	s := &Services{logger: logger}
	s.reset()
	return s
}

func (s *Services) reset() {
	s.modes = map[string]Mode{}
	s.attempts = map[string]int{}
	s.calls = nil
	s.shop = newShop()
	s.users = newUsers()
	s.refunds = newRefunds()
	s.orders = newFulfillment()
	s.hooks = nil
}

// Handler routes every fake API and the admin endpoints.
func (s *Services) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/modes", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		writeJSON(w, http.StatusOK, s.modes)
	})
	mux.HandleFunc("PUT /admin/modes/{endpoint}", func(w http.ResponseWriter, r *http.Request) {
		var m Mode
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := m.validate(); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.mu.Lock()
		s.modes[r.PathValue("endpoint")] = m
		// A new mode starts counting failures afresh.
		s.attempts = map[string]int{}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, m)
	})
	mux.HandleFunc("DELETE /admin/modes/{endpoint}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		delete(s.modes, r.PathValue("endpoint"))
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admin/calls", func(w http.ResponseWriter, r *http.Request) {
		endpoint := r.URL.Query().Get("endpoint")
		s.mu.Lock()
		defer s.mu.Unlock()
		out := []Call{}
		for _, c := range s.calls {
			if endpoint == "" || c.Endpoint == endpoint {
				out = append(out, c)
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /admin/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		s.reset()
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	s.shopRoutes(mux)
	s.dataRoutes(mux)
	s.userRoutes(mux)
	s.refundRoutes(mux)
	s.fulfillmentRoutes(mux)
	s.hookRoutes(mux)
	return mux
}

// endpoint registers a fake API under a name that modes and the call log
// use; the mode decides whether h runs.
func (s *Services) endpoint(mux *http.ServeMux, pattern, name string, h func(w http.ResponseWriter, r *http.Request) int) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		status := s.serve(w, r, name, h)
		s.mu.Lock()
		s.calls = append(s.calls, Call{
			Endpoint: name, Method: r.Method, Path: r.URL.Path, Status: status, At: time.Now(),
			IdempotencyKey: r.Header.Get("Idempotency-Key"), CorrelationID: r.Header.Get("X-Correlation-ID"),
		})
		s.mu.Unlock()
		s.logger.InfoContext(r.Context(), "call", slog.String("endpoint", name), slog.String("path", r.URL.Path), slog.Int("status", status))
	})
}

// serve applies the endpoint's mode and returns the status answered (0 for
// a dropped connection).
func (s *Services) serve(w http.ResponseWriter, r *http.Request, name string, h func(w http.ResponseWriter, r *http.Request) int) int {
	m, err := s.mode(r, name)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return http.StatusBadRequest
	}
	if m.Mode == "ok" {
		return h(w, r)
	}
	key := name + "\x00" + r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	s.attempts[key]++
	n := s.attempts[key]
	s.mu.Unlock()
	if m.Failures > 0 && n > m.Failures {
		return h(w, r)
	}
	switch m.Mode {
	case "flaky":
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("%s is flaky (call %d)", name, n))
		return http.StatusInternalServerError
	case "slow":
		d, _ := time.ParseDuration(m.Delay)
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return 0
		}
		return h(w, r)
	case "429", "503":
		code, _ := strconv.Atoi(m.Mode)
		if m.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(m.RetryAfter))
		}
		writeError(w, code, fmt.Sprintf("%s is busy (call %d)", name, n))
		return code
	default: // down
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return 0
			}
		}
		panic(http.ErrAbortHandler)
	}
}

// mode is the request's query mode, else the endpoint's, else ok.
func (s *Services) mode(r *http.Request, name string) (Mode, error) {
	q := r.URL.Query()
	if q.Get("mode") == "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		if m, ok := s.modes[name]; ok {
			return m, nil
		}
		return Mode{Mode: "ok"}, nil
	}
	m := Mode{Mode: q.Get("mode"), Delay: q.Get("delay")}
	var err error
	if v := q.Get("failures"); v != "" {
		if m.Failures, err = strconv.Atoi(v); err != nil {
			return m, fmt.Errorf("failures: %v", err)
		}
	}
	if v := q.Get("retry_after"); v != "" {
		if m.RetryAfter, err = strconv.Atoi(v); err != nil {
			return m, fmt.Errorf("retry_after: %v", err)
		}
	}
	return m, m.validate()
}

func writeJSON(w http.ResponseWriter, code int, v any) int {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
	return code
}

func writeError(w http.ResponseWriter, code int, msg string) int {
	return writeJSON(w, code, map[string]any{"error": msg})
}

// decode reads a JSON body, answering 400 when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) (int, bool) {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		return writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error()), false
	}
	return 0, true
}
