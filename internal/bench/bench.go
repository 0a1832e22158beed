// Package bench is taskerd's benchmark harness: it runs fixed workloads
// through the real server (store, registry, engine, HTTP API) against a
// real PostgreSQL with durability on, and reports figures with the machine
// and database they were measured on. Speed is measured here, never
// asserted by timed tests.
package bench

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/pgcluster"
	"github.com/taskerd/taskerd/internal/server"
)

// Workloads, in the order they run.
var Workloads = []string{"throughput", "latency", "dag-size", "api", "idle"}

// Extra lists workloads that run only when named with --workload: they
// check an operational promise rather than a speed target, and take long.
var Extra = []string{"retention", "load"}

// Config configures a benchmark run.
type Config struct {
	// AdminURL is a server where databases can be created; "" boots a
	// private cluster (fsync on) under a temporary folder.
	AdminURL string
	// Workload runs one workload; "" runs all.
	Workload string
	// Quick runs every workload tiny, as a smoke test.
	Quick bool
	// Duration is how long the load workload sends traffic; zero means
	// DefaultLoadDuration. Quick runs cap it at a second.
	Duration time.Duration
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// Statements, when set, receives the top SQL statements by database
	// time after each workload (needs pg_stat_statements; the private
	// cluster preloads it).
	Statements io.Writer
}

// Figure is one measured number.
type Figure struct {
	Workload string  `json:"workload"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Replicas int     `json:"replicas"`
	// Target is the goal ("≥ 10000"), empty when the figure has none.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	// Gate marks a target that must be met: a promise checked (no errors,
	// no leak), not a speed to aim for. `taskerd bench` fails when one is
	// missed.
	Gate bool `json:"gate,omitempty"`
}

// Missed returns the gated figures whose target was not met.
func (rep *Report) Missed() []Figure {
	var out []Figure
	for _, f := range rep.Figures {
		if f.Gate && (f.Met == nil || !*f.Met) {
			out = append(out, f)
		}
	}
	return out
}

// Report is a whole run.
type Report struct {
	Started time.Time `json:"started"`
	Quick   bool      `json:"quick"`
	// CPUProfiled says a CPU profile was taken during the run. Sampling
	// costs taskerd's process CPU (3 to 10 points of the 3-replica
	// throughput ratio on 2 cores, sessions 9 and 10), so figures from a
	// profiled run are comparable only with other profiled runs.
	CPUProfiled bool     `json:"cpu_profiled,omitempty"`
	Machine     Machine  `json:"machine"`
	Postgres    Postgres `json:"postgres"`
	Figures     []Figure `json:"figures"`
}

// Machine describes where the run happened.
type Machine struct {
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// Postgres describes the database server.
type Postgres struct {
	Version           string `json:"version"`
	Fsync             string `json:"fsync"`
	SynchronousCommit string `json:"synchronous_commit"`
	SharedBuffers     string `json:"shared_buffers"`
	MaxConnections    string `json:"max_connections"`
	Private           bool   `json:"private_cluster"`
}

//go:embed sql/server_settings.sql
var serverSettingsSQL string

// Run runs the workloads and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	all := append(slices.Clone(Workloads), Extra...)
	if cfg.Workload != "" && !contains(all, cfg.Workload) {
		return nil, fmt.Errorf("unknown workload %q: want one of %s", cfg.Workload, strings.Join(all, ", "))
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rep := &Report{Started: time.Now().UTC(), Quick: cfg.Quick,
		Machine: Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}}
	admin := cfg.AdminURL
	if admin == "" {
		dir, err := os.MkdirTemp("", "taskerd-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		_ = os.Chmod(dir, 0o755) // the postgres user must enter it when we are root
		cluster, err := pgcluster.New(pgcluster.Config{Dir: filepath.Join(dir, "pg"), InstallMissing: true,
			Logger: logger, Settings: map[string]string{
				"max_connections": "200",
				// For the per-workload statement report; its cost is small.
				"shared_preload_libraries":          "pg_stat_statements",
				"pg_stat_statements.track_planning": "on",
			}})
		if err != nil {
			return nil, err
		}
		if err := cluster.Start(ctx); err != nil {
			return nil, err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = cluster.Stop(stopCtx)
		}()
		admin = cluster.URL("postgres")
		rep.Postgres.Private = true
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, fmt.Errorf("bench: connect: %w", err)
	}
	err = conn.QueryRow(ctx, serverSettingsSQL).Scan(&rep.Postgres.Version, &rep.Postgres.Fsync,
		&rep.Postgres.SynchronousCommit, &rep.Postgres.SharedBuffers, &rep.Postgres.MaxConnections)
	conn.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: read settings: %w", err)
	}
	r := &runner{admin: admin, quick: cfg.Quick, duration: cfg.Duration, logger: logger, details: cfg.Statements}
	for _, w := range all {
		if cfg.Workload == "" && contains(Extra, w) || cfg.Workload != "" && w != cfg.Workload {
			continue
		}
		logger.Info("workload starting", slog.String("workload", w))
		figs, err := r.run(ctx, w)
		if err != nil {
			return rep, fmt.Errorf("bench %s: %w", w, err)
		}
		rep.Figures = append(rep.Figures, figs...)
		if cfg.Statements != nil {
			r.topStatements(ctx, cfg.Statements, w)
		}
	}
	judge(rep)
	return rep, nil
}

// runner holds what workloads share.
type runner struct {
	admin    string
	quick    bool
	duration time.Duration // the load workload's
	logger   *slog.Logger
	details  io.Writer // -v: where workloads print what they saw (nil: nothing)
}

func (r *runner) run(ctx context.Context, w string) ([]Figure, error) {
	switch w {
	case "throughput":
		return r.throughput(ctx)
	case "latency":
		return r.latency(ctx)
	case "dag-size":
		return r.dagSize(ctx)
	case "api":
		return r.api(ctx)
	case "idle":
		return r.idle(ctx)
	case "retention":
		return r.retention(ctx)
	case "load":
		return r.load(ctx)
	}
	return nil, fmt.Errorf("unknown workload %q", w)
}

// freshDatabase creates and migrates a database for one workload; drop
// removes it.
func (r *runner) freshDatabase(ctx context.Context, workload string) (url string, drop func(), err error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "bench_" + strings.ReplaceAll(workload, "-", "_") + "_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, r.admin)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	// Each workload starts on a quiet server: without this the WAL left by
	// the previous one is checkpointed during the next and shows up as its
	// tail latency. Needs superuser (or pg_checkpoint); skipped otherwise.
	_, _ = conn.Exec(ctx, "CHECKPOINT")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	if url, err = pgcluster.WithDatabase(r.admin, name); err != nil {
		return "", nil, err
	}
	m, err := migrate.New(ctx, migrate.Config{DatabaseURL: url, Logger: r.logger})
	if err != nil {
		return "", nil, err
	}
	defer m.Close()
	if err := m.Up(ctx); err != nil {
		return "", nil, err
	}
	return url, func() {
		c, err := pgx.Connect(context.Background(), r.admin)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	}, nil
}

// replica builds a server on url listening on loopback; it is not started.
func (r *runner) replica(url string, mod func(*config.Config)) (*server.Server, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	settings, err := config.NewParser(fs, config.Server).Parse(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, err
	}
	settings.DatabaseURL = url
	settings.HTTPAddr = "127.0.0.1:0"
	settings.ShutdownTimeout = 30 * time.Second
	// Benchmark replicas listen on loopback only and measure the engine,
	// not token checks: authentication is off, explicitly.
	settings.AuthMode, settings.InsecureNoAuth = config.AuthNone, true
	if mod != nil {
		mod(settings)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// Replicas log warnings only, even under -v: a line per event would
	// cost the engine more CPU than the work it measures.
	return server.New(server.Config{Settings: settings, Logger: slog.New(warnOnly{r.logger.Handler()}), Listener: ln})
}

func stopAll(servers ...*server.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Stop(ctx)
	}
}

// judge marks each figure that has a target.
func judge(rep *Report) {
	one := 0.0
	for _, f := range rep.Figures {
		if f.Workload == "throughput" && f.Metric == "steps_per_second" && f.Replicas == 1 {
			one = f.Value
		}
	}
	for i := range rep.Figures {
		f := &rep.Figures[i]
		var met bool
		switch {
		case f.Workload == "throughput" && f.Metric == "steps_per_second" && f.Replicas == 1:
			f.Target, met = "≥ 10000", f.Value >= 10000
		case f.Workload == "throughput" && f.Metric == "steps_per_second" && f.Replicas == 3 && one > 0:
			f.Target, met = fmt.Sprintf("≥ %.0f (0.9 × 1 replica)", 0.9*one), f.Value >= 0.9*one
		case (f.Workload == "latency" || f.Workload == "retention") && f.Metric == "ready_to_start_p99_ms":
			// During retention too: deleting a backlog must not pause the engine.
			f.Target, met = "< 50", f.Value < 50
		case f.Workload == "dag-size" && strings.HasSuffix(f.Metric, "_ratio_10k_1k"):
			f.Target, met = "≤ 12", f.Value <= 12
		case f.Workload == "api" && f.Metric == "creates_per_second":
			f.Target, met = "≥ 2000", f.Value >= 2000
		case f.Workload == "idle" && f.Metric == "queries_per_second":
			f.Target, met = "≤ 5", f.Value <= 5
		default:
			continue
		}
		f.Met = &met
	}
}

// Print writes the report as a table.
func (rep *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "taskerd bench — %d cores, %s %s/%s, PostgreSQL %s (fsync=%s, synchronous_commit=%s, shared_buffers=%s%s)%s\n\n",
		rep.Machine.Cores, rep.Machine.GoVersion, rep.Machine.OS, rep.Machine.Arch, rep.Postgres.Version,
		rep.Postgres.Fsync, rep.Postgres.SynchronousCommit, rep.Postgres.SharedBuffers,
		map[bool]string{true: ", private cluster on this machine", false: ""}[rep.Postgres.Private],
		map[bool]string{true: " — QUICK (smoke test, figures meaningless)", false: ""}[rep.Quick]+
			map[bool]string{true: " — CPU PROFILED (sampling slows taskerd: compare only with profiled runs)", false: ""}[rep.CPUProfiled])
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tREPLICAS\tMETRIC\tVALUE\tUNIT\tTARGET\tMET")
	for _, f := range rep.Figures {
		met := ""
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		if f.Gate {
			met += " (gate)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", f.Workload, f.Replicas, f.Metric, format(f.Value), f.Unit, f.Target, met)
	}
	tw.Flush()
}

func format(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// WriteJSON saves the report.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadReport loads a saved report.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}

// Compare prints the change of every figure from old to new.
func Compare(w io.Writer, old, new *Report) {
	key := func(f Figure) string { return fmt.Sprintf("%s/%d/%s", f.Workload, f.Replicas, f.Metric) }
	olds := map[string]Figure{}
	for _, f := range old.Figures {
		olds[key(f)] = f
	}
	if old.CPUProfiled != new.CPUProfiled {
		fmt.Fprintf(w, "warning: only the %s run took a CPU profile, whose sampling slows taskerd; the changes below include that\n\n",
			map[bool]string{true: "old", false: "new"}[old.CPUProfiled])
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tREPLICAS\tMETRIC\tOLD\tNEW\tCHANGE")
	var keys []string
	news := map[string]Figure{}
	for _, f := range new.Figures {
		keys = append(keys, key(f))
		news[key(f)] = f
	}
	for _, k := range keys {
		n := news[k]
		o, ok := olds[k]
		change := "new"
		if ok && o.Value != 0 {
			change = fmt.Sprintf("%+.1f%%", (n.Value-o.Value)/o.Value*100)
		}
		oldV := "-"
		if ok {
			oldV = format(o.Value)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", n.Workload, n.Replicas, n.Metric, oldV, format(n.Value), change)
	}
	tw.Flush()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var errTimeout = errors.New("timed out waiting for tasks to finish")

//go:embed sql/top_statements.sql
var topStatementsSQL string

// topStatements prints where the database spent its time in a workload,
// then resets the counters for the next one.
func (r *runner) topStatements(ctx context.Context, w io.Writer, workload string) {
	conn, err := pgx.Connect(ctx, r.admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		fmt.Fprintf(w, "(no pg_stat_statements: %v)\n", err)
		return
	}
	rows, err := conn.Query(ctx, topStatementsSQL)
	if err != nil {
		fmt.Fprintf(w, "(pg_stat_statements: %v)\n", err)
		return
	}
	defer rows.Close()
	fmt.Fprintf(w, "\n-- %s: top statements by database time\n%8s %8s %8s %9s %9s  %s\n", workload, "exec_ms", "plan_ms", "calls", "mean_ms", "rows", "query")
	for rows.Next() {
		var total, plan, calls, nrows int64
		var mean float64
		var q string
		if rows.Scan(&total, &plan, &calls, &mean, &nrows, &q) == nil {
			fmt.Fprintf(w, "%8d %8d %8d %9.3f %9d  %s\n", total, plan, calls, mean, nrows, q)
		}
	}
	rows.Close()
	_, _ = conn.Exec(ctx, "SELECT pg_stat_statements_reset()")
}

// warnOnly passes on warnings and errors only.
type warnOnly struct{ slog.Handler }

func (h warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

func (h warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{h.Handler.WithAttrs(as)} }
func (h warnOnly) WithGroup(n string) slog.Handler       { return warnOnly{h.Handler.WithGroup(n)} }
