package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
)

// discoveryHandlers answer Tasker's handler discovery: namespaces →
// templates → versions → step graph. Shapes follow Tasker's, so its users'
// clients keep working.
type discoveryHandlers struct {
	registry *registry.Registry
	// store tells which namespaces and templates are paused; nil: none.
	store  *store.Store
	logger *slog.Logger
}

// pauses reads the pauses in force (a handful of rows).
func (h *discoveryHandlers) pauses(r *http.Request) (pausedSet, error) {
	if h.store == nil {
		return pausedSet{}, nil
	}
	ps, err := h.store.Pauses(r.Context())
	if err != nil {
		return nil, err
	}
	return newPausedSet(ps), nil
}

// NamespaceSummary is one namespace in discovery.
type NamespaceSummary struct {
	registry.NamespaceSummary
	// Paused: the namespace's steps are not claimed (POST …/pause).
	Paused bool `json:"paused"`
}

// HandlerSummary is one template in discovery.
type HandlerSummary struct {
	registry.HandlerSummary
	// Paused: the template's steps are not claimed, by its own pause or
	// its namespace's.
	Paused bool `json:"paused"`
}

type namespacesResponse struct {
	Namespaces      []NamespaceSummary `json:"namespaces"`
	TotalNamespaces int                `json:"total_namespaces" example:"2"`
}

// namespaces answers GET /handlers.
//
//	@Summary		List namespaces
//	@Description	The namespaces that have live templates, with how many templates each holds (Tasker's handler discovery). Permission: tasker.handler:index; a caller scoped to namespaces lists only theirs.
//	@Tags			handlers
//	@Produce		json
//	@Success		200	{object}	namespacesResponse
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.handler:index"
//	@Router			/handlers [get]
func (h *discoveryHandlers) namespaces(w http.ResponseWriter, r *http.Request) {
	ns := h.registry.Namespaces()
	// The registry's list is in memory and short: filtering it here is
	// the whole cost (no page to keep full).
	if s := scopeOf(r); !s.All() {
		ns = slices.DeleteFunc(ns, func(n registry.NamespaceSummary) bool { return !s.Contains(n.Name) })
	}
	paused, err := h.pauses(r)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	out := make([]NamespaceSummary, len(ns))
	for i, n := range ns {
		out[i] = NamespaceSummary{NamespaceSummary: n, Paused: paused.namespace(n.Name)}
	}
	WriteJSON(w, http.StatusOK, namespacesResponse{Namespaces: out, TotalNamespaces: len(out)})
}

type namespaceResponse struct {
	Namespace string `json:"namespace" example:"shop"`
	// Paused: the namespace is paused (its templates show paused too).
	Paused        bool             `json:"paused"`
	Handlers      []HandlerSummary `json:"handlers"`
	TotalHandlers int              `json:"total_handlers" example:"3"`
}

// namespace answers GET /handlers/{namespace}; 404 for a namespace without
// live templates.
//
//	@Summary		List a namespace's templates
//	@Description	The templates of a namespace, each with its live versions. Permission: tasker.handler:index.
//	@Tags			handlers
//	@Produce		json
//	@Param			namespace	path		string	true	"Namespace"	example(shop)
//	@Success		200			{object}	namespaceResponse
//	@Failure		404			{object}	Problem	"No live templates in this namespace"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.handler:index"
//	@Router			/handlers/{namespace} [get]
func (h *discoveryHandlers) namespace(w http.ResponseWriter, r *http.Request) {
	ns := chi.URLParam(r, "namespace")
	hs, err := h.registry.Handlers(ns)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	paused, err := h.pauses(r)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	out := make([]HandlerSummary, len(hs))
	for i, hs := range hs {
		out[i] = HandlerSummary{HandlerSummary: hs, Paused: paused.template(ns, hs.Name)}
	}
	WriteJSON(w, http.StatusOK, namespaceResponse{Namespace: ns, Paused: paused.namespace(ns), Handlers: out, TotalHandlers: len(out)})
}

// handlerDetail is one template version with its dependency graph.
type handlerDetail struct {
	Name            string                  `json:"name"`
	Namespace       string                  `json:"namespace"`
	Version         string                  `json:"version"`
	FullName        string                  `json:"full_name"`
	Description     string                  `json:"description,omitempty"`
	ID              int64                   `json:"id"`
	ContentHash     string                  `json:"content_hash"`
	Paused          bool                    `json:"paused"` // by the template's pause or its namespace's
	Environment     string                  `json:"environment,omitempty"`
	Schema          json.RawMessage         `json:"schema,omitempty"`
	Defaults        registry.Defaults       `json:"defaults"`
	StepTemplates   []registry.StepTemplate `json:"step_templates"`
	DependencyGraph registry.Graph          `json:"dependency_graph"`
}

type handlerResponse struct {
	Handler handlerDetail `json:"handler"`
}

// handler answers GET /handlers/{namespace}/{name}?version= (default, or
// "latest": the highest live version).
//
//	@Summary		Show a template
//	@Description	One template version with its steps and dependency graph: nodes, edges, levels, execution order and a Mermaid drawing. Permission: tasker.handler:show.
//	@Tags			handlers
//	@Produce		json
//	@Param			namespace	path		string	true	"Namespace"									example(shop)
//	@Param			name		path		string	true	"Name"										example(checkout)
//	@Param			version		query		string	false	"Version; default (or latest) the highest"	example(1.0.0)
//	@Success		200			{object}	handlerResponse
//	@Failure		404			{object}	Problem	"No such template or version"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.handler:show"
//	@Router			/handlers/{namespace}/{name} [get]
func (h *discoveryHandlers) handler(w http.ResponseWriter, r *http.Request) {
	version := r.URL.Query().Get("version")
	if version == "latest" {
		version = ""
	}
	reg, err := h.registry.Resolve(r.Context(), chi.URLParam(r, "namespace"), chi.URLParam(r, "name"), version)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	paused, err := h.pauses(r)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	t := reg.Template
	d := handlerDetail{
		Paused:          paused.template(t.NamespaceName, t.Name),
		Name:            t.Name,
		Namespace:       t.NamespaceName,
		Version:         t.Version,
		FullName:        t.FullName(),
		Description:     t.Description,
		ID:              reg.ID,
		ContentHash:     reg.ContentHash,
		Environment:     t.Environment,
		Defaults:        t.Defaults,
		StepTemplates:   t.StepTemplates,
		Schema:          t.Schema,
		DependencyGraph: registry.DependencyGraph(t),
	}
	WriteJSON(w, http.StatusOK, handlerResponse{Handler: d})
}
