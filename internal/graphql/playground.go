package graphql

import (
	"net/http"
	"net/http/httptest"
	"path"

	wgplayground "github.com/wundergraph/graphql-go-tools/pkg/playground"

	"github.com/taskerd/taskerd/internal/api"
)

// playground serves GraphQL Playground (a GraphiQL-based IDE) from files
// embedded in its Go module: the page works offline, with no CDN.
type playground struct {
	page   http.HandlerFunc
	assets map[string]http.HandlerFunc
}

func newPlayground() (*playground, error) {
	hs, err := wgplayground.New(wgplayground.Config{
		PathPrefix:          api.BasePath,
		PlaygroundPath:      "/graphql",
		GraphqlEndpointPath: api.BasePath + "/graphql",
	}).Handlers()
	if err != nil {
		return nil, err
	}
	p := &playground{assets: map[string]http.HandlerFunc{}}
	for _, h := range hs {
		if h.Path == api.BasePath+"/graphql" {
			p.page = h.Handler
			continue
		}
		p.assets[path.Base(h.Path)] = h.Handler
	}
	if p.page == nil {
		return nil, errNoPage
	}
	return p, nil
}

var errNoPage = &Error{Code: CodeInternal, Message: "the playground module served no page"}

// Playground answers GET /tasker/graphql with the playground's page.
func (h *Handler) Playground(w http.ResponseWriter, r *http.Request) {
	// The page is a template with the endpoint baked in; its assets are
	// addressed relative to it, so any proxy prefix keeps working.
	rec := httptest.NewRecorder()
	h.playground.page(rec, r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// PlaygroundAsset answers GET /tasker/graphql/{file}: the playground's
// script, style sheet and images.
func (h *Handler) PlaygroundAsset(w http.ResponseWriter, r *http.Request) {
	serve, ok := h.playground.assets[path.Base(r.URL.Path)]
	if !ok {
		api.WriteProblem(w, r, api.NotFound("no such playground file"))
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=86400")
	serve(w, r)
}
