package api

import (
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"
	swaggerFiles "github.com/swaggo/files/v2"
	httpSwagger "github.com/swaggo/http-swagger/v2"
	"github.com/swaggo/swag"

	// Registers the generated OpenAPI document with swag; `make swagger`
	// regenerates it from the annotations in this package.
	_ "github.com/taskerd/taskerd/docs/swagger"
)

// The API's general description, read by swag (`make swagger`).
//
//	@title						taskerd API
//	@version					1.0
//	@description				taskerd runs workflows: register task templates (namespaced, versioned DAGs of steps), create tasks from them, and follow, retry, resolve or cancel them and their steps. Every error is application/problem+json (RFC 9457) with a detail to act on and, for invalid input, a list of errors each naming a JSON pointer into the body or a query parameter. Lists page with limit (default 20, above 100 served as 100) and a keyset cursor (next_cursor, or the Link header rel=next).
//	@BasePath					/tasker
//	@accept						json
//	@produce					json
//	@tag.name					tasks
//	@tag.description			Tasks: instances of a template with a context, run step by step.
//	@tag.name					workflow steps
//	@tag.description			The steps of a task: readiness, attempts, errors, manual actions.
//	@tag.name					analytics
//	@tag.description			Throughput, durations and bottlenecks, from SQL functions, cached briefly.
//	@tag.name					templates
//	@tag.description			Task templates: register and retire them.
//	@tag.name					handlers
//	@tag.description			Discovery of the registered templates (Tasker's handlers).
//	@tag.name					health
//	@tag.description			Liveness, readiness and status, for probes and dashboards.
//	@tag.name					events
//	@tag.description			The catalog of the events taskerd emits, with their payloads.
//	@tag.name					webhooks
//	@tag.description			Outbound webhooks: subscriptions to events, signed deliveries through a transactional outbox, and their log.
//	@tag.name					metrics
//	@tag.description			Prometheus metrics.
//	@tag.name					audit
//	@tag.description			The audit trail: who did what to which object.
//	@securityDefinitions.apikey	BearerAuth
//	@in							header
//	@name						Authorization
//	@description				With TASKER_AUTH_MODE=jwt, every route but the probes (live, ready) and these docs needs a JWT: enter "Bearer <token>". The token's roles (claim TASKER_JWT_ROLES_CLAIM, default roles) map to permissions tasker.<resource>:<action>, optionally scoped to a namespace (payments:tasker.task:cancel); each operation names its permission in x-permission and its description. Missing or invalid token: 401 with WWW-Authenticate: Bearer; a permission held nowhere: 403; an object in a namespace outside the caller's scope: 404, as if it did not exist. See docs/auth.md.
//	@externalDocs.description	Tasker, the model taskerd follows
//	@externalDocs.url			https://github.com/tasker-systems/tasker

// APIDocsPath is where the Swagger UI is served; the spec is at
// APIDocsPath + "/doc.json".
const APIDocsPath = BasePath + "/api-docs"

// apiDocs serves the Swagger UI and the OpenAPI document. The spec declares
// no host, so "Try it out" calls whichever host served the page, under the
// spec's base path, /tasker.
type apiDocs struct {
	ui     http.Handler
	logger *slog.Logger
}

func newAPIDocs(logger *slog.Logger) *apiDocs {
	return &apiDocs{logger: logger, ui: httpSwagger.Handler(
		httpSwagger.URL("doc.json"), // relative: works behind any proxy that keeps the path
		httpSwagger.Layout(httpSwagger.BaseLayout),
		httpSwagger.DocExpansion("list"),
		httpSwagger.DeepLinking(true),
		httpSwagger.UIConfig(map[string]string{
			"displayRequestDuration": "true",
			"tryItOutEnabled":        "false",
		}),
	)}
}

// redirect sends /tasker/api-docs to /tasker/api-docs/, where the UI's
// relative links resolve.
func (d *apiDocs) redirect(w http.ResponseWriter, r *http.Request) {
	target := APIDocsPath + "/"
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	http.Redirect(w, r, target, http.StatusMovedPermanently)
}

// readSpec renders the generated spec once: swag.ReadDoc writes to the
// shared spec while it renders (a data race between concurrent requests),
// and the spec cannot change while the binary runs.
var readSpec = sync.OnceValues(func() (string, error) { return swag.ReadDoc() })

// serve answers the UI page, its assets and the spec; anything else under
// /api-docs/ is a 404 problem, like every other unknown path.
func (d *apiDocs) serve(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "*")
	switch {
	case name == "" || name == "index.html":
		d.delegate(w, r, "index.html")
	case name == "doc.json":
		doc, err := readSpec()
		if err != nil {
			WriteError(w, r, d.logger, err)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write([]byte(doc))
	case uiAsset(name):
		// Assets are versioned with the binary: a browser may keep them an hour.
		w.Header().Set("Cache-Control", "public, max-age=3600")
		d.delegate(w, r, name)
	default:
		NotFoundHandler()(w, r)
	}
}

// uiAsset says whether name is a file of the Swagger UI distribution that
// the page loads. The distribution's own index.html and initializer point
// at a demo API, so they are not served.
func uiAsset(name string) bool {
	if strings.Contains(name, "/") || name == "swagger-initializer.js" || name == "index.html" {
		return false
	}
	switch path.Ext(name) {
	case ".js", ".css", ".png", ".html", ".map":
	default:
		return false
	}
	st, err := fs.Stat(swaggerFiles.FS, name)
	return err == nil && !st.IsDir()
}

// delegate hands the request to http-swagger, which picks the file from
// the request URI; the URI is rebuilt so that a query string cannot
// confuse it.
func (d *apiDocs) delegate(w http.ResponseWriter, r *http.Request, name string) {
	r2 := r.Clone(r.Context())
	r2.RequestURI = APIDocsPath + "/" + name
	r2.URL.RawQuery = ""
	d.ui.ServeHTTP(w, r2)
}
