package server_test

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/server"
	"github.com/taskerd/taskerd/internal/testdb"
)

// TestLeadershipInStatusAndMetrics checks that a lone replica elects itself
// to run maintenance and says so in /health/status and /metrics.
func TestLeadershipInStatusAndMetrics(t *testing.T) {
	t.Parallel()
	r := startReplica(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, body := r.call(http.MethodGet, "/health/status", "", nil)
		var st struct {
			Leadership *struct {
				Leader bool   `json:"leader"`
				Holder string `json:"holder"`
			} `json:"leadership"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &st) != nil {
			t.Fatalf("status: %d %s", code, body)
		}
		if st.Leadership != nil && st.Leadership.Leader && st.Leadership.Holder != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leadership in status: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, _, metrics := r.call(http.MethodGet, "/metrics", "", nil)
	if code != http.StatusOK || !strings.Contains(string(metrics), "\ntasker_leader 1\n") {
		t.Fatalf("metrics (%d) lack tasker_leader 1", code)
	}
}

// TestLeaderFailoverKeepsMaintenanceGoing runs two replicas on one
// database: one leads and deletes expired tasks; when it stops, the other
// takes over within the lease's TTL and goes on deleting.
func TestLeaderFailoverKeepsMaintenanceGoing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testdb.New(t)
	start := func(id string) *server.Server {
		t.Helper()
		env := map[string]string{"TASKER_DATABASE_URL": dsn, "TASKER_REPLICA_ID": id, "TASKER_LEADER_TTL": "1s",
			"TASKER_MAINTENANCE_INTERVAL": "200ms", "TASKER_INSECURE_NO_AUTH": "true"}
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		settings, err := config.NewParser(fs, config.Server).Parse(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(server.Config{Settings: settings, Listener: ln, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_ = srv.Stop(stopCtx)
		})
		return srv
	}
	replicas := map[string]*server.Server{"a": start("a"), "b": start("b")}
	conn, err := pgx.Connect(ctx, dsn+"&search_path=tasker")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	// leader waits until exactly one replica says it leads, and returns it.
	leader := func() string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			var leaders []string
			for id, srv := range replicas {
				if leads(t, srv) {
					leaders = append(leaders, id)
				}
			}
			if len(leaders) == 1 {
				return leaders[0]
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("no single leader within 10 s")
		return ""
	}
	// expired inserts n tasks that finished 40 days ago (past the default
	// 30-day retention) and waits for maintenance to delete them.
	expired := func(n int) {
		t.Helper()
		if _, err := conn.Exec(ctx, `INSERT INTO tasks (task_id, named_task_id, namespace_name, task_name, task_version, status, completed_at)
			SELECT gen_random_uuid(), 0, 'default', 'old', '1.0.0', 'complete', now() - interval '40 days' FROM generate_series(1, $1)`, n); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			var left int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM tasks`).Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d expired tasks still there after 10 s", left)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	first := leader()
	expired(3)
	if err := replicas[first].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	delete(replicas, first)
	second := leader()
	if second == first {
		t.Fatalf("the stopped replica %s still leads", first)
	}
	expired(3)
	var holder string
	if err := conn.QueryRow(ctx, `SELECT holder FROM leader_leases`).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	if holder != second {
		t.Fatalf("lease held by %q, want %q", holder, second)
	}
}

// leads reads a replica's /health/status and tells whether it leads.
func leads(t *testing.T, srv *server.Server) bool {
	t.Helper()
	resp, err := http.Get("http://" + srv.Addr() + "/tasker/health/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Leadership *struct {
			Leader bool `json:"leader"`
		} `json:"leadership"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("status: %d %v", resp.StatusCode, err)
	}
	return st.Leadership != nil && st.Leadership.Leader
}
