package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/taskerd/taskerd/internal/registry"
)

// templateHandlers register and delete task templates.
type templateHandlers struct {
	registry *registry.Registry
	logger   *slog.Logger
}

// templateResponse is the body of a successful registration.
type templateResponse struct {
	// Result is "created", "unchanged" or "replaced".
	Result      string             `json:"result"`
	ID          int64              `json:"id"`
	FullName    string             `json:"full_name"`
	ContentHash string             `json:"content_hash"`
	Template    *registry.Template `json:"template"`
}

// register answers POST /templates: the body is a template in YAML or JSON
// (by Content-Type); ?replace=true supersedes a different template at the
// same version. 201 created, 200 unchanged or replaced, 409 conflict, 422
// invalid with every error.
func (h *templateHandlers) register(w http.ResponseWriter, r *http.Request) {
	format, err := registry.FormatForContentType(r.Header.Get("Content-Type"))
	if err != nil {
		WriteProblem(w, r, UnsupportedMediaType(err.Error()))
		return
	}
	replace, err := boolParam(r, "replace")
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	body, err := readBody(r)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	res, err := h.registry.Register(r.Context(), body, format, registry.RegisterOptions{Replace: replace, Source: "api"})
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	t := res.Registered.Template
	status := http.StatusOK
	if res.Outcome == registry.Created {
		status = http.StatusCreated
	}
	w.Header().Set("Location", BasePath+"/handlers/"+url.PathEscape(t.NamespaceName)+"/"+url.PathEscape(t.Name)+"?version="+url.QueryEscape(t.Version))
	WriteJSON(w, status, templateResponse{
		Result:      string(res.Outcome),
		ID:          res.Registered.ID,
		FullName:    t.FullName(),
		ContentHash: res.Registered.ContentHash,
		Template:    t,
	})
}

// remove answers DELETE /templates/{namespace}/{name}/{version}: a soft
// delete (204). 409 while unfinished tasks use the version, unless
// ?force=true; 404 when no live version matches.
func (h *templateHandlers) remove(w http.ResponseWriter, r *http.Request) {
	force, err := boolParam(r, "force")
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	ns, name, version := chi.URLParam(r, "namespace"), chi.URLParam(r, "name"), chi.URLParam(r, "version")
	if err := h.registry.Delete(r.Context(), ns, name, version, force); err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// boolParam reads an optional true/false query parameter.
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, BadRequest(fmt.Sprintf("query parameter %q must be true or false, got %q", name, v))
	}
	return b, nil
}

// readBody reads a whole request body within the BodyLimit.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, BadRequest("request body is empty")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, PayloadTooLarge(fmt.Sprintf("request body exceeds the limit of %d bytes", mbe.Limit))
		}
		if ctxErr := r.Context().Err(); ctxErr != nil {
			return nil, fmt.Errorf("read request body: %w", ctxErr)
		}
		return nil, BadRequest("the request body could not be read: " + err.Error())
	}
	return body, nil
}
