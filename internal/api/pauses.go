package api

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// pauseHandlers pause and resume the claiming of a namespace's or a
// template's steps.
type pauseHandlers struct {
	engine   *engine.Engine
	registry *registry.Registry
	logger   *slog.Logger
}

// PauseResponse is the state of a namespace or template after a pause or
// resume.
type PauseResponse struct {
	Namespace string `json:"namespace" example:"shop"`
	// Name is the template (every version); absent for a namespace.
	Name   string `json:"name,omitempty" example:"checkout"`
	Paused bool   `json:"paused" example:"true"`
	// Steps counts the runnable steps this call parked (pause) or made
	// runnable again (resume).
	Steps int `json:"steps" example:"12"`
}

// pauseNamespace answers POST /handlers/{namespace}/pause.
//
//	@Summary		Pause a namespace
//	@Description	Stops claiming the steps of every template of the namespace, on every replica and for remote workers. New tasks are accepted and wait; running steps finish. The pause is kept in the database (it survives restarts) and shows as paused in discovery and /health/status. Pausing twice is harmless. Permission: tasker.handler:pause.
//	@Tags			handlers
//	@Produce		json
//	@Param			namespace	path		string	true	"Namespace"	example(shop)
//	@Success		200			{object}	PauseResponse
//	@Failure		404			{object}	Problem	"No live templates in this namespace"
//	@Failure		401			{object}	Problem	"No valid bearer token"
//	@Failure		403			{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.handler:pause"
//	@Router			/handlers/{namespace}/pause [post]
func (h *pauseHandlers) pauseNamespace(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, chi.URLParam(r, "namespace"), "", h.engine.Pause)
}

// resumeNamespace answers POST /handlers/{namespace}/resume.
//
//	@Summary		Resume a namespace
//	@Description	Lifts a namespace's pause: its parked steps become runnable in the order they became ready and every replica is woken. A template paused on its own stays paused. Resuming what is not paused is harmless. Permission: tasker.handler:resume.
//	@Tags			handlers
//	@Produce		json
//	@Param			namespace	path		string	true	"Namespace"	example(shop)
//	@Success		200			{object}	PauseResponse
//	@Failure		404			{object}	Problem	"No live templates in this namespace"
//	@Failure		401			{object}	Problem	"No valid bearer token"
//	@Failure		403			{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.handler:resume"
//	@Router			/handlers/{namespace}/resume [post]
func (h *pauseHandlers) resumeNamespace(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, chi.URLParam(r, "namespace"), "", h.engine.Resume)
}

// pauseTemplate answers POST /handlers/{namespace}/{name}/pause.
//
//	@Summary		Pause a template
//	@Description	Stops claiming the steps of every version of the template, as pausing a namespace does for all its templates. Permission: tasker.handler:pause.
//	@Tags			handlers
//	@Produce		json
//	@Param			namespace	path		string	true	"Namespace"	example(shop)
//	@Param			name		path		string	true	"Name"		example(checkout)
//	@Success		200			{object}	PauseResponse
//	@Failure		404			{object}	Problem	"No such template"
//	@Failure		401			{object}	Problem	"No valid bearer token"
//	@Failure		403			{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.handler:pause"
//	@Router			/handlers/{namespace}/{name}/pause [post]
func (h *pauseHandlers) pauseTemplate(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, chi.URLParam(r, "namespace"), chi.URLParam(r, "name"), h.engine.Pause)
}

// resumeTemplate answers POST /handlers/{namespace}/{name}/resume.
//
//	@Summary		Resume a template
//	@Description	Lifts a template's pause (every version). Its steps stay parked while its namespace is paused. Permission: tasker.handler:resume.
//	@Tags			handlers
//	@Produce		json
//	@Param			namespace	path		string	true	"Namespace"	example(shop)
//	@Param			name		path		string	true	"Name"		example(checkout)
//	@Success		200			{object}	PauseResponse
//	@Failure		404			{object}	Problem	"No such template"
//	@Failure		401			{object}	Problem	"No valid bearer token"
//	@Failure		403			{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.handler:resume"
//	@Router			/handlers/{namespace}/{name}/resume [post]
func (h *pauseHandlers) resumeTemplate(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, chi.URLParam(r, "namespace"), chi.URLParam(r, "name"), h.engine.Resume)
}

func (h *pauseHandlers) serve(w http.ResponseWriter, r *http.Request, namespace, name string,
	act func(ctx context.Context, namespace, name, actor string) (engine.PauseResult, error)) {
	if !noQuery(w, r) {
		return
	}
	// No body, or an empty object: a pause carries nothing else.
	var none *struct{}
	if err := decodeOptionalJSON(r, &none); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	if none == nil && r.ContentLength != 0 {
		WriteProblem(w, r, BadRequest("send no body, or {}"))
		return
	}
	// Only what discovery knows can be paused: a typo must not leave a
	// pause row that matches nothing.
	var err error
	if name == "" {
		_, err = h.registry.Handlers(namespace)
	} else {
		_, err = h.registry.Resolve(r.Context(), namespace, name, "")
	}
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	res, err := act(r.Context(), namespace, name, actor(r))
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	noteAudit(r, pauseTarget(namespace, name), namespace)
	WriteJSON(w, http.StatusOK, PauseResponse{Namespace: namespace, Name: name, Paused: res.Paused, Steps: res.Steps})
}

func pauseTarget(namespace, name string) string {
	if name == "" {
		return namespace
	}
	return namespace + "." + name
}

// pausedSet answers "is this namespace or template paused" for discovery.
type pausedSet map[[2]string]bool

func newPausedSet(ps []store.Pause) pausedSet {
	s := pausedSet{}
	for _, p := range ps {
		s[[2]string{p.Namespace, p.Name}] = true
	}
	return s
}

// namespace reports a namespace pause; template, a pause of the template
// or of its namespace.
func (s pausedSet) namespace(ns string) bool { return s[[2]string{ns, ""}] }
func (s pausedSet) template(ns, name string) bool {
	return s[[2]string{ns, ""}] || s[[2]string{ns, name}]
}
