package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/auth/authtest"
	"github.com/taskerd/taskerd/internal/testserver"
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
	s, auth := newSweepServer(t)
	if r := s.do(t, "POST", "/templates", http.Header{"Content-Type": {"application/yaml"}, "Authorization": auth}, noopDiamondYAML); r.code != 201 {
		t.Fatalf("register: %d %s", r.code, r.body)
	}
	r := s.do(t, "POST", "/tasks", http.Header{"Content-Type": {"application/json"}, "Authorization": auth}, `{"namespace":"shop","name":"diamond"}`)
	var task taskBody
	if err := json.Unmarshal(r.body, &task); r.code != 201 || err != nil {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	id := task.TaskID.String()
	for deadline := time.Now().Add(30 * time.Second); task.Status != "complete"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("task %s: %s, want complete", id, task.Status)
		}
		r := s.do(t, "GET", "/tasks/"+id, http.Header{"Authorization": auth}, "")
		if err := json.Unmarshal(r.body, &task); r.code != 200 || err != nil {
			t.Fatalf("show: %d %s", r.code, r.body)
		}
	}
	stepID := task.Steps[0].StepID.String()
	sp := loadSpec(t)
	conn := connect(t, s.dsn)
	before := stableRowCounts(t, conn)

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
		chunked                              bool  // sent without a Content-Length
		header                               http.Header
		status                               int // the one status wanted, when the sweep knows it
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
				probe{why: "oversized body", method: r.method, path: path, contentType: "application/json", chunked: true,
					body: `{"name":"` + strings.Repeat("x", api.DefaultMaxBodyBytes) + `"}`},
				probe{why: "null body", method: r.method, path: path, contentType: "application/json", body: "null"},
				probe{why: "nulls where objects belong", method: r.method, path: path, contentType: "application/json", body: `[null]`},
				probe{why: "deep nesting", method: r.method, path: path, contentType: "application/json",
					body: `{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`},
				probe{why: "deep nesting", method: r.method, path: path, contentType: "application/json",
					body: strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)},
				probe{why: "invalid UTF-8", method: r.method, path: path, contentType: "application/json", body: "{\"\xc0\xaf\":1}"},
				probe{why: "invalid UTF-8", method: r.method, path: path, contentType: "application/json", body: "{\"a\":[\"\xed\xa0\x80\"]}"},
				probe{why: "NUL", method: r.method, path: path, contentType: "application/json", body: "{\"a\":\"\x00\"}"},
				probe{why: "oversized header", method: r.method, path: path, contentType: "application/json", body: `{"no_such_field":1}`,
					header: http.Header{"X-Correlation-Id": {strings.Repeat("c", 60<<10)}}},
				probe{why: "oversized header", method: r.method, path: path, contentType: "application/json", body: "{}",
					header: http.Header{"X-Padding": {strings.Repeat("p", 200<<10)}}, status: http.StatusRequestHeaderFieldsTooLarge},
			)
			// Bodies of the route's own shape, each with one field wrong.
			if example, ok := exampleBody(t, sp, r.path, strings.ToLower(r.method)); ok {
				for _, b := range malformedBodies(t, sp, example, sp.bodyParam(t, r.path, strings.ToLower(r.method))) {
					probes = append(probes, probe{why: b.why, method: r.method, path: path, contentType: "application/json", body: b.body})
				}
			}
		}
		// A bearer token too long to be one, where a token is needed.
		// (The GraphQL playground is open, like the docs.)
		if !strings.HasPrefix(r.path, "/health/") && !strings.HasPrefix(r.path, "/api-docs") && !(r.method == "GET" && strings.HasPrefix(r.path, "/graphql")) {
			probes = append(probes, probe{why: "oversized header", method: r.method, path: path,
				header: http.Header{"Authorization": {"Bearer " + strings.Repeat("A", 60<<10)}}, status: http.StatusUnauthorized})
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
		req.Header["Authorization"] = auth
		for k, vs := range p.header {
			req.Header[k] = vs
		}
		if p.contentType != "" {
			req.Header.Set("Content-Type", p.contentType)
		}
		if p.length > 0 {
			// The length must really be sent: with http.NoBody the client
			// declares 0, which a route taking an optional body accepts.
			// The server refuses on the header alone, before reading.
			req.ContentLength = p.length
			req.Body = io.NopCloser(strings.NewReader(strings.Repeat(" ", int(p.length))))
		}
		if p.chunked {
			req.ContentLength = -1
			req.Body = io.NopCloser(strings.NewReader(p.body))
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
		case p.status == http.StatusRequestHeaderFieldsTooLarge:
			// net/http answers this one itself, before any handler, in
			// text/plain: the only 4xx that is not a problem document.
			if resp.StatusCode != p.status {
				t.Errorf("%s: %d, want %d", what, resp.StatusCode, p.status)
			}
		case p.status != 0 && resp.StatusCode != p.status:
			t.Errorf("%s: %d, want %d", what, resp.StatusCode, p.status)
		case resp.StatusCode < 400 || resp.StatusCode > 499:
			t.Errorf("%s: %d, want a 4xx", what, resp.StatusCode)
		case strings.HasSuffix(p.path, "/graphql") && resp.StatusCode == http.StatusUnauthorized:
			// GraphQL clients read a 401 in GraphQL's format (docs/graphql.md).
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: 401 as %q, want GraphQL's application/json", what, resp.Header.Get("Content-Type"))
			}
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
	for _, k := range []string{"wrong type", "huge number", "deep nesting", "duplicate key", "nulls where objects belong", "oversized header", "invalid UTF-8"} {
		if kinds[k] == 0 {
			t.Errorf("the sweep sent no %q probe: %v", k, kinds)
		}
	}
	// Nothing of it changed the task, nor any table.
	var after taskBody
	if r := s.do(t, "GET", "/tasks/"+id, http.Header{"Authorization": auth}, ""); r.code != 200 || json.Unmarshal(r.body, &after) != nil {
		t.Fatalf("show: %d %s", r.code, r.body)
	}
	if after.Status != "complete" || after.Reason != "" || !after.UpdatedAt.Equal(task.UpdatedAt) {
		t.Errorf("the sweep changed the task: %+v", after)
	}
	if afterCounts := rowCounts(t, conn); !maps.Equal(before, afterCounts) {
		t.Errorf("the sweep changed the database: row counts %v before, %v after", before, afterCounts)
	}
}

// sweepSecret signs the sweep's admin token.
const sweepSecret = "sweep-secret-0123456789abcdef0123456789abcdef"

// newSweepServer is a full replica with TASKER_AUTH_MODE=jwt, and the
// Authorization header of an admin: the sweep's requests pass the guard
// and reach the handlers, where malformed input must be refused.
func newSweepServer(t *testing.T) (templateServer, []string) {
	t.Helper()
	r := testserver.Start(t, map[string]string{
		"TASKER_AUTH_MODE": "jwt", "TASKER_INSECURE_NO_AUTH": "false", "TASKER_JWT_SECRET": sweepSecret,
		"TASKER_JWT_ISSUER": authtest.Issuer, "TASKER_JWT_AUDIENCE": authtest.Audience,
		"TASKER_METRICS_AUTH": "true",
	}, nil)
	token := authtest.SignHS256(t, []byte(sweepSecret), authtest.Valid("sweeper", "admin"))
	return templateServer{url: r.URL + api.BasePath, dsn: r.DSN, handler: r.Server.Handler()}, []string{"Bearer " + token}
}

// unaudited are the tables a refused request may write to: the audit
// trail records refusals by design.
var unaudited = []string{"audit_events"}

// rowCounts counts the rows of every table of taskerd's schema (found in
// the catalog, so a new table is counted without editing this).
func rowCounts(t *testing.T, conn *pgx.Conn) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, table := range tables {
		if slices.Contains(unaudited, table) {
			continue
		}
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[table] = n
	}
	if len(out) < 10 {
		t.Fatalf("only %d tables counted: %v", len(out), out)
	}
	return out
}

// stableRowCounts waits for the engine's writes after a task completes
// (events, runs) to settle, so that the sweep alone is measured.
func stableRowCounts(t *testing.T, conn *pgx.Conn) map[string]int64 {
	t.Helper()
	last := rowCounts(t, conn)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		now := rowCounts(t, conn)
		if maps.Equal(last, now) {
			return now
		}
		last = now
	}
	t.Fatalf("row counts still changing: %v", last)
	return nil
}

// exampleBody is the spec's example of a route's JSON object body, or
// false when it takes none (or a document that is not an object).
func exampleBody(t *testing.T, sp *spec, path, method string) (map[string]any, bool) {
	t.Helper()
	for _, p := range sp.Paths[path][method].Parameters {
		if p.In == "body" {
			m, ok := sp.example(t, p.Schema).(map[string]any)
			return m, ok && len(m) > 0
		}
	}
	return nil, false
}

// bodyProperties resolves a body schema to its properties' schemas.
func bodyProperties(sp *spec, schema map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	if ref, ok := schema["$ref"].(string); ok {
		return bodyProperties(sp, sp.Definitions[strings.TrimPrefix(ref, "#/definitions/")])
	}
	for _, part := range anySlice(schema["allOf"]) {
		for k, v := range bodyProperties(sp, part.(map[string]any)) {
			out[k] = v
		}
	}
	props, _ := schema["properties"].(map[string]any)
	for k, v := range props {
		out[k] = v.(map[string]any)
	}
	return out
}

type malformedBody struct{ why, body string }

// malformedBodies derives, from a route's example body, bodies each wrong
// in one way: a field of the wrong type, a number no field can hold, a
// repeated key, an array of nulls where it holds values.
func malformedBodies(t *testing.T, sp *spec, example map[string]any, schema map[string]any) []malformedBody {
	t.Helper()
	with := func(key string, raw string) string {
		parts := []string{}
		for k, v := range example {
			if k == key {
				continue
			}
			b, _ := json.Marshal(v)
			parts = append(parts, strconv.Quote(k)+":"+string(b))
		}
		return "{" + strings.Join(append(parts, strconv.Quote(key)+":"+raw), ",") + "}"
	}
	var out []malformedBody
	for name, prop := range bodyProperties(sp, schema) {
		typ, _ := prop["type"].(string)
		switch typ {
		case "string":
			out = append(out, malformedBody{"wrong type", with(name, "12345")}, malformedBody{"wrong type", with(name, `{"a":1}`)})
		case "integer":
			out = append(out, malformedBody{"wrong type", with(name, `"twelve"`)},
				malformedBody{"huge number", with(name, "9223372036854775808")},
				malformedBody{"huge number", with(name, "-1e400")}, malformedBody{"huge number", with(name, "1.5")})
		case "number":
			out = append(out, malformedBody{"wrong type", with(name, `"twelve"`)}, malformedBody{"huge number", with(name, "1e400")})
		case "boolean":
			out = append(out, malformedBody{"wrong type", with(name, `"maybe"`)})
		case "array":
			out = append(out, malformedBody{"wrong type", with(name, `{"not":"an array"}`)},
				malformedBody{"nulls where objects belong", with(name, `[null]`)})
		}
		// Every field repeated, with the example's value then another.
		if v, ok := example[name]; ok {
			b, _ := json.Marshal(v)
			out = append(out, malformedBody{"duplicate key", strings.TrimSuffix(with(name, string(b)), "}") + "," + strconv.Quote(name) + ":" + string(b) + "}"})
		}
	}
	return out
}
