package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/testserver"
)

// rawResponse is an answer with its undecoded body.
type rawResponse struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request with extra headers and returns the raw answer; the
// client neither follows redirects nor decompresses, so tests see what the
// server sent.
func (s templateServer) do(t *testing.T, method, path string, header http.Header, body string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if req.Header.Get("Accept-Encoding") == "" {
		req.Header.Set("Accept-Encoding", "identity")
	}
	client := &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResponse{code: resp.StatusCode, header: resp.Header, body: raw}
}

// getJSON GETs path and decodes the JSON answer into out, failing unless
// the status is want.
func (s templateServer) getJSON(t *testing.T, path string, want int, out any) http.Header {
	t.Helper()
	r := s.do(t, "GET", path, nil, "")
	if r.code != want {
		t.Fatalf("GET %s: %d, want %d: %s", path, r.code, want, r.body)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, r.body)
	}
	return r.header
}

// connect opens a connection to a test database in taskerd's schema, for
// fixtures and for reading rows back.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

// namedTaskID finds a registered template's id.
func namedTaskID(t *testing.T, conn *pgx.Conn, namespace, name string) int64 {
	t.Helper()
	var id int64
	err := conn.QueryRow(context.Background(), `SELECT nt.named_task_id FROM named_tasks nt
		JOIN task_namespaces ns USING (task_namespace_id)
		WHERE ns.name = $1 AND nt.name = $2 AND nt.deleted_at IS NULL`, namespace, name).Scan(&id)
	if err != nil {
		t.Fatalf("named task %s.%s: %v", namespace, name, err)
	}
	return id
}

// fixtureTask is a task row written directly, so a test controls its
// timestamps and state without the engine.
type fixtureTask struct {
	id          uuid.UUID
	namespace   string
	name        string
	status      string
	initiator   string
	source      string
	tags        []string
	createdAt   time.Time
	startedAt   *time.Time
	completedAt *time.Time
	namedTaskID int64
	totalSteps  int
	failedSteps int
	unfinished  int
	version     string
}

// insertTasks writes tasks in one statement (one transaction, so rows
// without an explicit createdAt share now()).
func insertTasks(t *testing.T, conn *pgx.Conn, tasks []fixtureTask) {
	t.Helper()
	n := len(tasks)
	ids := make([]uuid.UUID, n)
	named := make([]int64, n)
	ns, names, versions, statuses := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	initiators, sources := make([]*string, n), make([]*string, n)
	tags := make([]string, n)
	created := make([]*time.Time, n)
	started, completed := make([]*time.Time, n), make([]*time.Time, n)
	total, failed, unfinished := make([]int32, n), make([]int32, n), make([]int32, n)
	for i, ft := range tasks {
		ids[i], named[i], ns[i], names[i], statuses[i] = ft.id, ft.namedTaskID, ft.namespace, ft.name, ft.status
		versions[i] = ft.version
		if versions[i] == "" {
			versions[i] = "1.0.0"
		}
		if ft.initiator != "" {
			initiators[i] = &ft.initiator
		}
		if ft.source != "" {
			sources[i] = &ft.source
		}
		b, _ := json.Marshal(ft.tags)
		if ft.tags == nil {
			b = []byte("[]")
		}
		tags[i] = string(b)
		if !ft.createdAt.IsZero() {
			c := ft.createdAt
			created[i] = &c
		}
		started[i], completed[i] = ft.startedAt, ft.completedAt
		total[i], failed[i], unfinished[i] = int32(ft.totalSteps), int32(ft.failedSteps), int32(ft.unfinished)
	}
	mustExec(t, conn, `INSERT INTO tasks (task_id, named_task_id, namespace_name, task_name, task_version, status,
			initiator, source_system, tags, created_at, requested_at, started_at, completed_at, total_steps, failed_steps,
			unfinished_steps)
		SELECT u.id, u.named, u.ns, u.name, u.version, u.status, u.initiator, u.source,
		       ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)), coalesce(u.created, now()),
		       coalesce(u.created, now()), u.started, u.completed, u.total, u.failed, u.unfinished
		FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
		            $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::int[], $14::int[], $15::int[])
		  AS u(id, named, ns, name, version, status, initiator, source, tags, created, started, completed, total, failed, unfinished)`,
		ids, named, ns, names, versions, statuses, initiators, sources, tags, created, started, completed, total, failed, unfinished)
}

func ptr[T any](v T) *T { return &v }

// newFullServer is a whole replica wired as `taskerd serve` wires it (every
// optional part on), listening on loopback: the tests that must cover every
// route production has walk its router.
func newFullServer(t *testing.T) templateServer {
	t.Helper()
	r := testserver.Start(t, nil, nil)
	return templateServer{url: r.URL + api.BasePath, dsn: r.DSN, handler: r.Server.Handler()}
}
