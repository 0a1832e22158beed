package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/api"
)

// badValue is a value that a query parameter of this shape must refuse,
// or "" when any string is acceptable (a filter that simply matches
// nothing).
func badValue(p parameter) string {
	typ, format, enum := p.Type, p.Format, p.Enum
	if typ == "array" && p.Items != nil {
		typ, _ = p.Items["type"].(string)
		format, _ = p.Items["format"].(string)
		enum, _ = p.Items["enum"].([]any)
	}
	switch {
	case p.Name == "cursor":
		return "not-a-cursor"
	case len(enum) > 0:
		return "bogus_value"
	case typ == "integer" || typ == "number":
		return "twelve"
	case typ == "boolean":
		return "maybe"
	case format == "date-time":
		return "yesterday"
	case format == "uuid":
		return "not-a-uuid"
	}
	return ""
}

// The sweep: every route the router has, taken from chi.Walk, sent
// malformed requests of every kind (bad and unknown ids, wrong methods,
// broken, mistyped and oversized bodies, bad query values as the spec
// types them) answers a 4xx problem document, never a 2xx or a 5xx.
func TestMalformedRequestSweep(t *testing.T) {
	t.Parallel()
	s := newFullServer(t)
	s.register(t, noopDiamondYAML)
	id := s.createTask(t, `{"namespace":"shop","name":"diamond"}`)
	s.waitStatus(t, id, "complete")
	var task taskBody
	s.getJSON(t, "/tasks/"+id, 200, &task)
	stepID := task.Steps[0].StepID.String()
	sp := loadSpec(t)

	routes := routerRoutes(t, s.handler)
	methods := map[string][]string{} // path → methods routed
	for _, r := range routes {
		methods[r.path] = append(methods[r.path], r.method)
	}
	real := strings.NewReplacer("{task_id}", id, "{step_id}", stepID, "{namespace}", "shop", "{name}", "diamond",
		"{version}", "1.0.0", "*", "doc.json")
	garbage := strings.NewReplacer("{task_id}", "not-a-uuid", "{step_id}", "12345", "{namespace}", "No%20Such",
		"{name}", "..%2F..", "{version}", "%00", "*", "nope.txt")
	unknown := strings.NewReplacer("{task_id}", uuid.NewString(), "{step_id}", uuid.NewString(), "{namespace}", "nowhere",
		"{name}", "nothing", "{version}", "9.9.9", "*", "missing.css")

	type probe struct {
		why, method, path, contentType, body string
		length                               int64 // a declared Content-Length over the limit
	}
	var probes []probe
	for _, r := range routes {
		hasParams := strings.ContainsAny(r.path, "{*")
		if hasParams {
			probes = append(probes,
				probe{why: "malformed ids", method: r.method, path: garbage.Replace(r.path)},
				probe{why: "unknown ids", method: r.method, path: unknown.Replace(r.path)},
			)
		}
		path := real.Replace(r.path)
		if r.method == http.MethodPost || r.method == http.MethodPatch || r.method == http.MethodPut {
			probes = append(probes,
				probe{why: "malformed JSON", method: r.method, path: path, contentType: "application/json", body: `{"name":`},
				probe{why: "JSON of the wrong shape", method: r.method, path: path, contentType: "application/json", body: `[1,2,3]`},
				probe{why: "unknown field", method: r.method, path: path, contentType: "application/json", body: `{"no_such_field":1}`},
				probe{why: "wrong content type", method: r.method, path: path, contentType: "text/xml", body: `<task/>`},
				probe{why: "invalid UTF-8", method: r.method, path: path, contentType: "application/json", body: "{\"name\":\"\xff\"}"},
				probe{why: "oversized body", method: r.method, path: path, contentType: "application/json", body: "{}", length: api.DefaultMaxBodyBytes + 1},
			)
		}
		op := sp.Paths[r.path][strings.ToLower(r.method)]
		for _, p := range op.Parameters {
			if p.In != "query" {
				continue
			}
			if v := badValue(p); v != "" {
				probes = append(probes, probe{why: "bad " + p.Name, method: r.method, path: path + "?" + url.Values{p.Name: {v}}.Encode(),
					contentType: "application/json", body: "{}"})
			}
		}
	}
	for path, ms := range methods {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "TRACE"} {
			if !slices.Contains(ms, m) {
				probes = append(probes, probe{why: "wrong method", method: m, path: real.Replace(path)})
			}
		}
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	kinds := map[string]int{}
	for _, p := range probes {
		req, err := http.NewRequest(p.method, s.url+p.path, strings.NewReader(p.body))
		if err != nil {
			t.Fatalf("%s %s: %v", p.method, p.path, err)
		}
		if p.contentType != "" {
			req.Header.Set("Content-Type", p.contentType)
		}
		if p.length > 0 {
			req.ContentLength = p.length
			req.Body = http.NoBody // the server refuses on the header alone
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", p.method, p.path, err)
		}
		var problem struct {
			Status int    `json:"status"`
			Detail string `json:"detail"`
			Type   string `json:"type"`
		}
		decodeErr := json.NewDecoder(resp.Body).Decode(&problem)
		resp.Body.Close()
		what := fmt.Sprintf("%s (%s %s)", p.why, p.method, p.path)
		switch {
		case resp.StatusCode < 400 || resp.StatusCode > 499:
			t.Errorf("%s: %d, want a 4xx", what, resp.StatusCode)
		case resp.Header.Get("Content-Type") != api.ContentTypeProblem:
			t.Errorf("%s: %d as %q, want %s", what, resp.StatusCode, resp.Header.Get("Content-Type"), api.ContentTypeProblem)
		case decodeErr != nil || problem.Status != resp.StatusCode || problem.Detail == "" || !strings.HasPrefix(problem.Type, "urn:taskerd:problem:"):
			t.Errorf("%s: %d with problem %+v (%v)", what, resp.StatusCode, problem, decodeErr)
		case resp.StatusCode == 405 && resp.Header.Get("Allow") == "":
			t.Errorf("%s: 405 without Allow", what)
		}
		kinds[p.why]++
	}
	t.Logf("%d malformed requests: %v", len(probes), kinds)
	if len(probes) < 200 || kinds["wrong method"] == 0 || kinds["malformed ids"] == 0 || kinds["bad limit"] == 0 || kinds["bad cursor"] == 0 {
		t.Errorf("the sweep sent only %d requests: %v", len(probes), kinds)
	}
	// Nothing of it changed the task.
	var after taskBody
	s.getJSON(t, "/tasks/"+id, 200, &after)
	if after.Status != "complete" || after.Reason != "" || !after.UpdatedAt.Equal(task.UpdatedAt) {
		t.Errorf("the sweep changed the task: %+v", after)
	}
}
