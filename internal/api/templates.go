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

	"github.com/taskerd/taskerd/internal/auth"
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
	Result      string             `json:"result" enums:"created,unchanged,replaced" example:"created"`
	ID          int64              `json:"id" example:"7"`
	FullName    string             `json:"full_name" example:"shop.checkout@1.0.0"`
	ContentHash string             `json:"content_hash" example:"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"`
	Template    *registry.Template `json:"template"`
}

// register answers POST /templates: the body is a template in YAML or JSON
// (by Content-Type); ?replace=true supersedes a different template at the
// same version. 201 created, 200 unchanged or replaced, 409 conflict, 422
// invalid with every error.
//
//	@Summary		Register a task template
//	@Description	Registers a template, written in YAML (Content-Type application/yaml) or JSON, in the format of docs/templates.md. Registering the same template again is a no-op (200, result unchanged); a different template at a registered version is a 409 unless replace=true (200, result replaced). Every validation error is listed with a JSON pointer into the document (422). Permission: tasker.template:create in the namespace of the template (403 otherwise).
//	@Tags			templates
//	@Accept			application/yaml
//	@Accept			json
//	@Produce		json
//	@Param			replace		query		bool	false	"Supersede a different template registered at the same version"
//	@Param			template	body		string	true	"The template, YAML or JSON"	schemaExample(namespace_name: shop\nname: checkout\nversion: 1.0.0\ndescription: Take an order from cart to confirmation\nstep_templates:\n  - name: validate\n    handler: noop\n  - name: charge\n    handler: echo\n    depends_on_step: validate\n    inputs: {gateway: primary}\n  - name: gift_wrap\n    handler: noop\n    skippable: true\n    depends_on_step: validate\n  - name: confirm\n    handler: noop\n    depends_on_steps: [charge, gift_wrap]\n)
//	@Success		201			{object}	templateResponse	"Created"
//	@Success		200			{object}	templateResponse	"Unchanged, or replaced"
//	@Header			201			{string}	Location			"/tasker/handlers/{namespace}/{name}?version={version}"
//	@Failure		400			{object}	Problem				"Unreadable document or bad replace"
//	@Failure		409			{object}	Problem				"Another template is registered at this version"
//	@Failure		413			{object}	Problem				"Body too large"
//	@Failure		415			{object}	Problem				"Neither YAML nor JSON"
//	@Failure		422			{object}	Problem				"Invalid template, every error listed"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.template:create"
//	@Router			/templates [post]
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
	def, err := h.registry.Parse(body, format)
	if err != nil {
		WriteError(w, r, h.logger, err)
		return
	}
	ns := def.Template.NamespaceName
	noteAudit(r, def.Template.FullName(), ns)
	// The namespace is the caller's own choice, so refusing it leaks nothing.
	if !can(r, auth.TemplateCreate, ns) {
		WriteProblem(w, r, Forbidden(fmt.Sprintf("this request needs the permission %s in namespace %q", auth.TemplateCreate, ns)))
		return
	}
	res, err := h.registry.RegisterDefinition(r.Context(), def, registry.RegisterOptions{Replace: replace, Source: "api"})
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
//
//	@Summary		Retire a task template version
//	@Description	Soft-deletes one version: existing tasks keep it, new tasks cannot use it. 409 while unfinished tasks use it, unless force=true. Permission: tasker.template:destroy.
//	@Tags			templates
//	@Produce		json
//	@Param			namespace	path	string	true	"Namespace"	example(shop)
//	@Param			name		path	string	true	"Name"		example(checkout)
//	@Param			version		path	string	true	"Version"	example(1.0.0)
//	@Param			force		query	bool	false	"Retire even while unfinished tasks use it"
//	@Success		204
//	@Failure		400	{object}	Problem	"Bad force"
//	@Failure		404	{object}	Problem	"No live version matches"
//	@Failure		409	{object}	Problem	"Unfinished tasks use it"
//	@Failure		401	{object}	Problem	"No valid bearer token"
//	@Failure		403	{object}	Problem	"Lacks the permission"
//	@Security		BearerAuth
//	@x-permission	"tasker.template:destroy"
//	@Router			/templates/{namespace}/{name}/{version} [delete]
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
