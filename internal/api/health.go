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
//
//	@Summary		Liveness
//	@Description	200 while the process serves; touches nothing else, so a slow database never gets the pod restarted.
//	@Tags			health
//	@Produce		json
//	@Success		200	{object}	health.LiveReport
//	@Router			/health/live [get]
func (h *healthHandlers) live(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, h.checker.Live())
}

// ready answers 200 when this replica can take traffic, else 503 with the
// failed checks. It is open to everyone: Kubernetes probes carry no token.
//
//	@Summary		Readiness
//	@Description	200 when the database answers within the ready timeout and the schema is recent enough; 503 with failed_checks otherwise, and from the moment shutdown begins.
//	@Tags			health
//	@Produce		json
//	@Success		200	{object}	health.ReadyReport
//	@Failure		503	{object}	health.ReadyReport	"Not ready"
//	@Router			/health/ready [get]
func (h *healthHandlers) ready(w http.ResponseWriter, r *http.Request) {
	rep := h.checker.Ready(r.Context())
	status := http.StatusOK
	if !rep.Ready {
		status = http.StatusServiceUnavailable
	}
	WriteJSON(w, status, rep)
}

// status summarises tasks, steps, retries and connections.
//
//	@Summary		System status
//	@Description	Task and step counts by state, retry figures and connection use, from get_system_health_counts(); cached (TASKER_STATUS_CACHE, 15 s by default). Permission: tasker.health_status:index (only with TASKER_HEALTH_STATUS_AUTH=true, the default; otherwise open like live and ready).
//	@Tags			health
//	@Produce		json
//	@Success		200	{object}	health.StatusReport
//	@Failure		503	{object}	Problem	"Database unavailable or not migrated"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.health_status:index"
//	@Router			/health/status [get]
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
