package graphql_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/graphql"
	"github.com/taskerd/taskerd/internal/store"
)

// queryCounter counts the statements a pool sends, batched ones included.
type queryCounter struct{ n atomic.Int64 }

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (c *queryCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	c.n.Add(1)
}
func (c *queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// direct is a GraphQL handler over the replica's engine and registry and
// a store of its own, called without the API's guard (a full-scope
// caller), so that the test sees every statement its queries cost.
type direct struct {
	t       *testing.T
	url     string
	queries *queryCounter
}

func newDirect(t *testing.T, s *server, cfg graphql.Config) *direct {
	t.Helper()
	counter := &queryCounter{}
	st, err := store.New(store.Config{DatabaseURL: s.r.DSN, Tracer: counter, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	cfg.Engine, cfg.Store, cfg.Registry = s.r.Server.Engine(), st, s.r.Server.Registry()
	h, err := graphql.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return &direct{t: t, url: ts.URL, queries: counter}
}

// run sends one query and returns the answer and the statements it cost.
func (d *direct) run(query string, vars map[string]any) (gqlResponse, int64) {
	d.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	before := d.queries.n.Load()
	resp, err := http.Post(d.url, "application/json", bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := gqlResponse{status: resp.StatusCode}
	if err := json.Unmarshal(raw, &out); err != nil {
		d.t.Fatalf("%d %v: %s", resp.StatusCode, err, raw)
	}
	return out, d.queries.n.Load() - before
}

// A page of tasks with their steps, the steps' readiness, dependency
// levels, parents and task costs the same few statements for 10 tasks as
// for 100: the loaders batch per kind of data, never per task.
func TestNoNPlusOne(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	s.register("", diamondYAML)
	const n = 100
	for range n {
		s.createREST("", "shop", "diamond")
	}
	d := newDirect(t, s, graphql.Config{})
	const q = `query($first: Int) { tasks(first: $first, filter: {namespace: "shop"}) { edges { node {
		id status context steps { name status dependencyLevel readiness { blockedReason }
			dependsOn { name dependencyLevel } task { id } } } } } }`
	counts := map[int]int64{}
	for _, first := range []int{10, n} {
		g, queries := d.run(q, map[string]any{"first": first})
		var conn connection
		g.field(t, "tasks", &conn)
		if len(conn.Edges) != first {
			t.Fatalf("first %d: %d tasks", first, len(conn.Edges))
		}
		for _, e := range conn.Edges {
			if len(e.Node.Steps) != 4 || e.Node.Steps[3].DependencyLevel == nil || *e.Node.Steps[3].DependencyLevel != 2 ||
				len(e.Node.Steps[3].DependsOn) != 2 || e.Node.Steps[3].Task.ID != e.Node.ID {
				t.Fatalf("task %s: %+v", e.Node.ID, e.Node.Steps)
			}
		}
		counts[first] = queries
	}
	// The list, the steps, their readiness with levels, the steps' tasks.
	const bound = 4
	if counts[10] != counts[n] || counts[n] > bound {
		t.Errorf("statements for 10 tasks: %d, for %d: %d; want the same, at most %d", counts[10], n, counts[n], bound)
	}
	t.Logf("statements: %v", counts)
}

// A query nested too deep or estimated too costly is refused before it
// runs, with a GraphQL error, never a 500; the limits are configurable.
func TestQueryLimits(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	s.register("", diamondYAML)
	id := s.createREST("", "shop", "diamond")
	d := newDirect(t, s, graphql.Config{})

	deep := `{ tasks { edges { node { steps { dependsOn { dependsOn { dependsOn { dependsOn { dependsOn { dependsOn { name } } } } } } } } } } }`
	viaFragments := `{ tasks { edges { node { ...S } } } }
		fragment S on Task { steps { dependsOn { ...P } } }
		fragment P on Step { dependsOn { dependsOn { dependsOn { dependsOn { dependsOn { name } } } } } }`
	costly := `{ tasks(first: 100) { edges { node { steps { dependsOn { task { steps { name } } } } } } } }`
	for _, tc := range []struct{ name, query, code string }{
		{"deep", deep, graphql.CodeQueryTooDeep},
		{"deep through fragments", viaFragments, graphql.CodeQueryTooDeep},
		{"costly", costly, graphql.CodeQueryTooComplex},
	} {
		g, queries := d.run(tc.query, nil)
		// gqlgen answers refusals before execution with 200 and no data.
		if g.status != http.StatusOK || g.code() != tc.code || len(g.Data) > 0 {
			t.Errorf("%s: %d %+v", tc.name, g.status, g.Errors)
		}
		if queries != 0 {
			t.Errorf("%s: %d statements ran", tc.name, queries)
		}
	}
	// Tools' introspection nests deep; it is bounded by the schema and allowed.
	intro := `{ __schema { types { name fields { name type { name ofType { name ofType { name ofType { name ofType { name ofType { name ofType { name } } } } } } } } } } }`
	if g, _ := d.run(intro, nil); g.status != 200 || len(g.Errors) > 0 {
		t.Errorf("introspection: %d %+v", g.status, g.Errors)
	}
	// Within the limits, the same shapes run.
	if g, _ := d.run(fmt.Sprintf(`{ task(id: %q) { steps { dependsOn { dependsOn { name } } } } }`, id), nil); g.status != 200 || len(g.Errors) > 0 {
		t.Errorf("a reasonable query: %d %+v", g.status, g.Errors)
	}

	tight := newDirect(t, s, graphql.Config{MaxDepth: 3, MaxComplexity: 50})
	if g, _ := tight.run(`{ tasks { edges { node { id } } } }`, nil); g.code() != graphql.CodeQueryTooDeep {
		t.Errorf("depth 4 under a limit of 3: %+v", g.Errors)
	}
	if g, _ := tight.run(`{ tasks(first: 30) { edges { cursor } } }`, nil); g.code() != graphql.CodeQueryTooComplex {
		t.Errorf("complexity over 50: %+v", g.Errors)
	}
	if g, _ := tight.run(`{ namespaces { name } }`, nil); g.status != 200 || len(g.Errors) > 0 {
		t.Errorf("a small query under tight limits: %+v", g.Errors)
	}
}
