package api

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/registry"
)

// discoveryHandlers answer Tasker's handler discovery: namespaces →
// templates → versions → step graph. Shapes follow Tasker's, so its users'
// clients keep working.
type discoveryHandlers struct {
	registry *registry.Registry
	logger   *slog.Logger
}

type namespacesResponse struct {
	Namespaces      []registry.NamespaceSummary `json:"namespaces"`
	TotalNamespaces int                         `json:"total_namespaces"`
}

// namespaces answers GET /handlers.
func (h *discoveryHandlers) namespaces(w http.ResponseWriter, r *http.Request) {
	ns := h.registry.Namespaces()
	WriteJSON(w, http.StatusOK, namespacesResponse{Namespaces: ns, TotalNamespaces: len(ns)})
}

type namespaceResponse struct {
	Namespace     string                    `json:"namespace"`
	Handlers      []registry.HandlerSummary `json:"handlers"`
	TotalHandlers int                       `json:"total_handlers"`
}

// namespace answers GET /handlers/{namespace}; 404 for a namespace without
// live templates.
func (h *discoveryHandlers) namespace(w http.ResponseWriter, r *http.Request) {
	ns := chi.URLParam(r, "namespace")
	hs, err := h.registry.Handlers(ns)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	WriteJSON(w, http.StatusOK, namespaceResponse{Namespace: ns, Handlers: hs, TotalHandlers: len(hs)})
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
	t := reg.Template
	d := handlerDetail{
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
