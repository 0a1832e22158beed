package api_test

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

const checkoutYAML = `namespace_name: shop
name: checkout
version: 1.0.0
step_templates:
  - {name: validate, handler: noop}
`

const syncYAML = `namespace_name: ops
name: sync
version: 2.0.0
step_templates:
  - {name: pull, handler: noop}
`

type listPage struct {
	Tasks []struct {
		TaskID      uuid.UUID  `json:"task_id"`
		Namespace   string     `json:"namespace"`
		Status      string     `json:"status"`
		Tags        []string   `json:"tags"`
		CreatedAt   time.Time  `json:"created_at"`
		CompletedAt *time.Time `json:"completed_at"`
		Context     any        `json:"context"`
	} `json:"tasks"`
	Count      int     `json:"count"`
	Limit      int     `json:"limit"`
	Offset     int     `json:"offset"`
	HasMore    bool    `json:"has_more"`
	NextCursor *string `json:"next_cursor"`
}

// listFixture registers two templates and writes 40 tasks of varied
// namespace, status, initiator, source, tags and times, ten of them
// sharing one created_at so that ties are broken by id.
func listFixture(t *testing.T) (templateServer, []fixtureTask) {
	t.Helper()
	s := newTaskServer(t)
	s.register(t, checkoutYAML)
	s.register(t, syncYAML)
	conn := connect(t, s.dsn)
	shop, ops := namedTaskID(t, conn, "shop", "checkout"), namedTaskID(t, conn, "ops", "sync")
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Microsecond)
	statuses := []string{"pending", "in_progress", "complete", "error", "cancelled", "resolved_manually", "complete"}
	var tasks []fixtureTask
	for i := range 40 {
		ft := fixtureTask{
			id: uuid.Must(uuid.NewV7()), namespace: "shop", name: "checkout", namedTaskID: shop,
			status: statuses[i%len(statuses)], initiator: []string{"web", "cron"}[i%2],
			source: []string{"storefront", "erp", "pos"}[i%3], createdAt: base.Add(time.Duration(i) * time.Minute),
		}
		if i%4 == 0 {
			ft.namespace, ft.name, ft.namedTaskID, ft.version = "ops", "sync", ops, "2.0.0"
		}
		if i < 10 {
			ft.createdAt = base.Add(-time.Hour) // ten tasks created at the same instant
		}
		switch i % 5 {
		case 0:
			ft.tags = []string{"vip"}
		case 1:
			ft.tags = []string{"vip", "rush"}
		case 2:
			ft.tags = []string{"rush"}
		}
		switch ft.status {
		case "complete", "error", "cancelled", "resolved_manually":
			// Completion times run backwards to creation, and repeat, so
			// sorting by completed_at differs from creation order and ties.
			ft.completedAt = ptr(base.Add(time.Duration(50-i%9) * time.Minute))
		}
		tasks = append(tasks, ft)
	}
	insertTasks(t, conn, tasks)
	return s, tasks
}

// expectList filters and sorts the fixture as the API should.
func expectList(tasks []fixtureTask, keep func(fixtureTask) bool, sortBy string, desc bool) []uuid.UUID {
	var out []fixtureTask
	for _, ft := range tasks {
		if keep(ft) {
			out = append(out, ft)
		}
	}
	slices.SortFunc(out, func(a, b fixtureTask) int {
		var c int
		switch sortBy {
		case "completed_at":
			// Unfinished last in either direction: compare as if they finished at +∞ (asc) or −∞ (desc).
			switch {
			case a.completedAt == nil && b.completedAt == nil:
			case a.completedAt == nil:
				c = 1
			case b.completedAt == nil:
				c = -1
			default:
				c = a.completedAt.Compare(*b.completedAt)
			}
			if desc && (a.completedAt == nil) != (b.completedAt == nil) {
				c = -c
			}
		case "status":
			c = strings.Compare(a.status, b.status)
		default:
			c = a.createdAt.Compare(b.createdAt)
		}
		c = cmp.Or(c, bytes.Compare(a.id[:], b.id[:]))
		if desc {
			return -c
		}
		return c
	})
	ids := make([]uuid.UUID, len(out))
	for i, ft := range out {
		ids[i] = ft.id
	}
	return ids
}

// pageAll follows next_cursor (and checks the Link header says the same)
// until the last page, returning every id in order.
func pageAll(t *testing.T, s templateServer, query url.Values) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	path := "/tasks?" + query.Encode()
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatalf("%s: more than 100 pages", query.Encode())
		}
		var p listPage
		hdr := s.getJSON(t, path, 200, &p)
		for _, task := range p.Tasks {
			ids = append(ids, task.TaskID)
			if task.Context != nil {
				t.Errorf("a list item carries its context: %v", task.Context)
			}
		}
		if p.Count != len(p.Tasks) {
			t.Errorf("count %d for %d tasks", p.Count, len(p.Tasks))
		}
		link := hdr.Get("Link")
		if !p.HasMore {
			if p.NextCursor != nil || link != "" {
				t.Errorf("last page with a cursor %v or Link %q", p.NextCursor, link)
			}
			return ids
		}
		if p.NextCursor == nil || !strings.Contains(link, `rel="next"`) {
			t.Fatalf("page with more but no cursor: %v, Link %q", p.NextCursor, link)
		}
		next := strings.TrimPrefix(strings.SplitN(link, ">", 2)[0], "<")
		u, err := url.Parse(next)
		if err != nil || u.Query().Get("cursor") != *p.NextCursor || u.Path != "/tasker/tasks" {
			t.Fatalf("Link %q does not carry next_cursor %s", link, *p.NextCursor)
		}
		path = "/tasks?" + u.RawQuery
	}
}

func TestTaskListFiltersSortsAndPages(t *testing.T) {
	t.Parallel()
	s, tasks := listFixture(t)
	all := func(fixtureTask) bool { return true }
	hasTags := func(ft fixtureTask, want ...string) bool {
		for _, w := range want {
			if !slices.Contains(ft.tags, w) {
				return false
			}
		}
		return true
	}
	cut := tasks[25].createdAt
	for _, tc := range []struct {
		name  string
		query url.Values
		keep  func(fixtureTask) bool
	}{
		{"everything, newest first", url.Values{}, all},
		{"namespace", url.Values{"namespace": {"ops"}}, func(ft fixtureTask) bool { return ft.namespace == "ops" }},
		{"name and version", url.Values{"name": {"sync"}, "version": {"2.0.0"}}, func(ft fixtureTask) bool { return ft.name == "sync" }},
		{"two statuses", url.Values{"status": {"complete,error"}}, func(ft fixtureTask) bool { return ft.status == "complete" || ft.status == "error" }},
		{"repeated status", url.Values{"status": {"pending", "cancelled"}}, func(ft fixtureTask) bool { return ft.status == "pending" || ft.status == "cancelled" }},
		{"every tag", url.Values{"tag": {"vip,rush"}}, func(ft fixtureTask) bool { return hasTags(ft, "vip", "rush") }},
		{"filters combined", url.Values{"namespace": {"shop"}, "initiator": {"web"}, "source_system": {"storefront"}, "tag": {"vip"}},
			func(ft fixtureTask) bool {
				return ft.namespace == "shop" && ft.initiator == "web" && ft.source == "storefront" && hasTags(ft, "vip")
			}},
		{"created window", url.Values{"created_after": {tasks[12].createdAt.Format(time.RFC3339Nano)}, "created_before": {cut.Format(time.RFC3339Nano)}},
			func(ft fixtureTask) bool { return ft.createdAt.After(tasks[12].createdAt) && ft.createdAt.Before(cut) }},
		{"created_at ascending", url.Values{"sort_by": {"created_at"}, "sort_order": {"asc"}}, all},
		{"completed_at descending", url.Values{"sort_by": {"completed_at"}}, all},
		{"completed_at ascending", url.Values{"sort_by": {"completed_at"}, "sort_order": {"asc"}}, all},
		{"status ascending, filtered", url.Values{"sort_by": {"status"}, "sort_order": {"asc"}, "initiator": {"cron"}},
			func(ft fixtureTask) bool { return ft.initiator == "cron" }},
		{"status descending", url.Values{"sort_by": {"status"}, "sort_order": {"desc"}}, all},
	} {
		desc := tc.query.Get("sort_order") != "asc"
		want := expectList(tasks, tc.keep, cmp.Or(tc.query.Get("sort_by"), "created_at"), desc)
		if len(want) == 0 {
			t.Fatalf("%s: the fixture matches nothing; the case tests nothing", tc.name)
		}
		q := url.Values{}
		for k, v := range tc.query {
			q[k] = v
		}
		q.Set("limit", "4")
		if got := pageAll(t, s, q); !slices.Equal(got, want) {
			t.Errorf("%s: got %d tasks %v\nwant %d %v", tc.name, len(got), got, len(want), want)
		}
	}

	// Tasker's offset paging reads the same order.
	want := expectList(tasks, all, "created_at", true)
	var p listPage
	s.getJSON(t, "/tasks?limit=5&offset=10", 200, &p)
	if len(p.Tasks) != 5 || p.Offset != 10 || p.Tasks[0].TaskID != want[10] || p.Tasks[4].TaskID != want[14] || !p.HasMore {
		t.Errorf("offset page: %+v", p)
	}
	// The next link of an offset page continues by cursor.
	var next listPage
	s.getJSON(t, "/tasks?limit=5&cursor="+*p.NextCursor, 200, &next)
	if next.Tasks[0].TaskID != want[15] {
		t.Errorf("after the offset page: %v, want %v", next.Tasks[0].TaskID, want[15])
	}
}

func TestTaskListLimits(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, checkoutYAML)
	conn := connect(t, s.dsn)
	id := namedTaskID(t, conn, "shop", "checkout")
	var tasks []fixtureTask
	for range 105 {
		tasks = append(tasks, fixtureTask{id: uuid.Must(uuid.NewV7()), namespace: "shop", name: "checkout", namedTaskID: id, status: "pending"})
	}
	insertTasks(t, conn, tasks)
	for _, tc := range []struct {
		query      string
		count, lim int
	}{
		{"", 20, 20},      // Tasker's default
		{"limit=7", 7, 7}, // as asked
		{"limit=100", 100, 100},
		{"limit=1000", 100, 100},                 // clamped, not refused
		{"limit=99999999999999999999", 100, 100}, // still just "a lot"
	} {
		var p listPage
		s.getJSON(t, "/tasks?"+tc.query, 200, &p)
		if len(p.Tasks) != tc.count || p.Limit != tc.lim || !p.HasMore {
			t.Errorf("%q: %d tasks, limit %d, has_more %v; want %d, %d, true", tc.query, len(p.Tasks), p.Limit, p.HasMore, tc.count, tc.lim)
		}
	}
}

// The pagination guarantee: paging by cursor while tasks are being
// created, every task that existed when the first page was read appears
// exactly once, and no task twice.
func TestTaskListCursorWithConcurrentInserts(t *testing.T) {
	t.Parallel()
	s := newTaskServer(t)
	s.register(t, checkoutYAML)
	conn := connect(t, s.dsn)
	id := namedTaskID(t, conn, "shop", "checkout")
	var tasks []fixtureTask
	for i := range 60 {
		// Some share a created_at, so ties are crossed by page boundaries.
		at := time.Now().Add(-time.Duration(i/3) * time.Second)
		tasks = append(tasks, fixtureTask{id: uuid.Must(uuid.NewV7()), namespace: "shop", name: "checkout", namedTaskID: id,
			status: "pending", createdAt: at})
	}
	insertTasks(t, conn, tasks)
	existing := map[uuid.UUID]bool{}
	for _, ft := range tasks {
		existing[ft.id] = true
	}
	runAt := time.Now().Add(time.Hour).UTC().Format(time.RFC3339) // created, never run during the test

	for _, order := range []string{"desc", "asc"} {
		var first listPage
		s.getJSON(t, "/tasks?limit=7&sort_order="+order, 200, &first)
		seen := map[uuid.UUID]int{}
		for _, task := range first.Tasks {
			seen[task.TaskID]++
		}
		// Insert while paging, through the API, until the pages are read.
		done := make(chan struct{})
		var wg sync.WaitGroup
		var inserted int
		wg.Go(func() {
			for inserted < 80 {
				select {
				case <-done:
					return
				default:
				}
				code, _, body := s.call(t, "POST", "/tasks", "application/json",
					`{"namespace":"shop","name":"checkout","run_at":"`+runAt+`"}`)
				if code != 201 {
					t.Errorf("concurrent insert: %d %v", code, body)
					return
				}
				inserted++
			}
		})
		cursor := first.NextCursor
		for pages := 0; cursor != nil; pages++ {
			if pages > 100 {
				t.Fatal("paging did not end")
			}
			var p listPage
			s.getJSON(t, "/tasks?limit=7&sort_order="+order+"&cursor="+*cursor, 200, &p)
			for _, task := range p.Tasks {
				seen[task.TaskID]++
			}
			cursor = p.NextCursor
		}
		close(done)
		wg.Wait()
		for id := range existing {
			if seen[id] != 1 {
				t.Errorf("%s: existing task %s seen %d times", order, id, seen[id])
			}
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("%s: task %s seen %d times", order, id, n)
			}
		}
		if inserted == 0 {
			t.Errorf("%s: nothing was inserted while paging; the test proved nothing", order)
		}
		// Tasks created meanwhile exist now; the next round pages over them too.
		for id := range seen {
			existing[id] = true
		}
	}
}

func TestTaskListBadRequests(t *testing.T) {
	t.Parallel()
	s, _ := listFixture(t)
	var p listPage
	s.getJSON(t, "/tasks?limit=2&namespace=shop", 200, &p)
	shopCursor := *p.NextCursor
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"l":"tasks","q":"x","k":{}}`))
	for _, tc := range []struct {
		query, param, detail string
	}{
		{"limit=0", "limit", "positive"},
		{"limit=-3", "limit", "positive"},
		{"limit=ten", "limit", "positive"},
		{"offset=-1", "offset", "integer"},
		{"offset=x", "offset", "integer"},
		{"status=done", "status", "not one of"},
		{"status=pending,finished", "status", "finished"},
		{"sort_by=name", "sort_by", "not one of"},
		{"sort_order=up", "sort_order", "not one of"},
		{"created_after=yesterday", "created_after", "RFC 3339"},
		{"created_before=2025-13-01T00:00:00Z", "created_before", "RFC 3339"},
		{"created_after=2025-02-01T00:00:00Z&created_before=2025-01-01T00:00:00Z", "created_after", "before"},
		{"namspace=shop", "namspace", "unknown parameter"},
		{"namespace=shop&namespace=ops", "namespace", "once"},
		{"cursor=!!!", "cursor", "not a cursor"},
		{"cursor=" + forged, "cursor", "other filters"},
		{"cursor=" + shopCursor, "cursor", "other filters"},                               // made for namespace=shop
		{"namespace=shop&sort_by=status&cursor=" + shopCursor, "cursor", "other filters"}, // another sort
		{"namespace=shop&offset=5&cursor=" + shopCursor, "offset", "cursor"},
		{"cursor=" + strings.Repeat("A", 2000), "cursor", "too long"},
	} {
		r := s.do(t, "GET", "/tasks?"+tc.query, nil, "")
		body := string(r.body)
		if r.code != 400 || r.header.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(body, fmt.Sprintf(`"parameter":%q`, tc.param)) || !strings.Contains(body, tc.detail) {
			t.Errorf("%s: %d %s; want 400 naming %s with %q", tc.query, r.code, body, tc.param, tc.detail)
		}
	}
	// The same cursor with its own filters works.
	s.getJSON(t, "/tasks?limit=2&namespace=shop&cursor="+shopCursor, 200, &p)
	if len(p.Tasks) != 2 {
		t.Errorf("the cursor with its filters: %d tasks", len(p.Tasks))
	}
}
