package api

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/taskerd/taskerd/internal/health"
	"github.com/taskerd/taskerd/internal/store"
)

type healthHandlers struct {
	checker *health.Checker
	logger  *slog.Logger
}

// live answers 200 while the process serves.
func (h *healthHandlers) live(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, h.checker.Live())
}

// ready answers 200 when this replica can take traffic, else 503 with the
// failed checks. It is open to everyone: Kubernetes probes carry no token.
func (h *healthHandlers) ready(w http.ResponseWriter, r *http.Request) {
	rep := h.checker.Ready(r.Context())
	status := http.StatusOK
	if !rep.Ready {
		status = http.StatusServiceUnavailable
	}
	WriteJSON(w, status, rep)
}

// status summarises tasks, steps, retries and connections.
func (h *healthHandlers) status(w http.ResponseWriter, r *http.Request) {
	rep, err := h.checker.Status(r.Context())
	switch {
	case err == nil:
		WriteJSON(w, http.StatusOK, rep)
	case errors.Is(err, store.ErrNotMigrated):
		WriteProblem(w, r, Unavailable("the database schema is not migrated: run `taskerd migrate up`"))
	case errors.Is(err, store.ErrUnavailable):
		WriteProblem(w, r, Unavailable("the database is unavailable; retry later"))
	default:
		WriteError(w, r, h.logger, err)
	}
}
