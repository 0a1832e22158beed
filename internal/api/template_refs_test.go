package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/testserver"
)

// A step's templates see its parents' results only: reading another step's
// is refused when the template is registered, with a pointer to the config,
// instead of failing every attempt at run time.
func TestTemplateReadingANonParentStepIsRefused(t *testing.T) {
	t.Parallel()
	r := testserver.Start(t, nil, nil)
	s := templateServer{url: r.URL + api.BasePath, dsn: r.DSN, handler: r.Server.Handler()}
	doc := func(ref string) string {
		return `namespace_name: refs
name: chain
version: 1.0.0
step_templates:
  - {name: a, handler: echo, inputs: {id: 7}}
  - {name: b, handler: echo, depends_on_step: a}
  - name: c
    handler: http
    depends_on_step: b
    handler_config:
      method: POST
      url: "http://127.0.0.1:1/orders"
      body: {id: "` + ref + `", note: "{{ with .context }}{{ .steps.anything }}{{ end }}"}
`
	}
	code, hdr, body := s.call(t, http.MethodPost, "/templates", "application/yaml", doc("{{ .steps.a.results.id }}"))
	if code != 422 || hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("a non-parent's results: %d %s %v", code, hdr.Get("Content-Type"), body)
	}
	errs, _ := body["errors"].([]any)
	if len(errs) != 1 {
		t.Fatalf("errors: %v", body)
	}
	e := errs[0].(map[string]any)
	if e["pointer"] != "/step_templates/2/handler_config" || !strings.Contains(e["detail"].(string), "reads .steps.a, which is not a parent of this step") ||
		!strings.Contains(e["detail"].(string), "depends_on: [b]") {
		t.Errorf("error: %v", e)
	}
	if code, _, body := s.call(t, http.MethodPost, "/templates", "application/yaml", doc("{{ .steps.b.results.id }}")); code != 201 {
		t.Fatalf("the parent's results: %d %v", code, body)
	}
}
