// Package testdb gives each test its own migrated PostgreSQL database.
//
// The server is TASKER_TEST_DATABASE_URL when set (its user needs CREATEDB);
// otherwise a private cluster is booted once per test process with the same
// code as `taskerd dev`. Migrations run once, into a template database; each
// test gets a clone (CREATE DATABASE … TEMPLATE …), which takes milliseconds,
// so tests run in parallel and never see each other's rows.
//
// A package that uses it calls Main from its TestMain so the private cluster
// is stopped when the tests end.
package testdb

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/pgcluster"
)

// EnvURL names the variable that points the tests at an existing server.
const EnvURL = "TASKER_TEST_DATABASE_URL"

// Schema is the schema the template database is migrated into.
const Schema = "tasker"

var (
	once     sync.Once
	adminURL string
	tmplName string
	setupErr error
	cluster  *pgcluster.Cluster
	dir      string
)

// Main runs the package's tests and then stops the private cluster, if one
// was booted. Use it as: func TestMain(m *testing.M) { testdb.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

// Shutdown stops the private cluster and removes its folder.
func Shutdown() {
	if cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = cluster.Stop(ctx)
		cancel()
	}
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// AdminURL returns the URL of the server's maintenance database, booting
// the private cluster on first use.
func AdminURL(t testing.TB) string {
	t.Helper()
	setup()
	if setupErr != nil {
		t.Fatalf("testdb: %v", setupErr)
	}
	return adminURL
}

// New creates a fresh database migrated to the latest version, dropped when
// the test ends, and returns its URL.
func New(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	name := "t_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := exec(ctx, admin, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tmplName)); err != nil {
		t.Fatalf("testdb: clone template: %v", err)
	}
	t.Cleanup(func() { Drop(t, name) })
	return WithDatabase(admin, name)
}

// NewEmpty creates an empty database (no schema at all), dropped when the
// test ends, for tests of the migrations themselves.
func NewEmpty(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	name := "e_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := exec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testdb: create database: %v", err)
	}
	t.Cleanup(func() { Drop(t, name) })
	return WithDatabase(admin, name)
}

// Drop removes a test database, disconnecting whatever still uses it.
func Drop(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := exec(ctx, adminURL, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
		t.Errorf("testdb: drop %s: %v", name, err)
	}
}

// WithDatabase returns u with its database replaced by name.
func WithDatabase(u, name string) string {
	out, err := pgcluster.WithDatabase(u, name)
	if err != nil {
		panic(err)
	}
	return out
}

func setup() {
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		adminURL = os.Getenv(EnvURL)
		if adminURL == "" {
			adminURL, setupErr = bootCluster(ctx)
			if setupErr != nil {
				return
			}
		}
		tmplName, setupErr = ensureTemplate(ctx, adminURL)
	})
}

func bootCluster(ctx context.Context) (string, error) {
	d, err := os.MkdirTemp("", "taskerd-testpg-")
	if err != nil {
		return "", err
	}
	// The postgres user (when tests run as root) must be able to enter it.
	if err := os.Chmod(d, 0o755); err != nil {
		return "", err
	}
	dir = d
	c, err := pgcluster.New(pgcluster.Config{
		Dir:            filepath.Join(d, "pg"),
		InstallMissing: true,
		BinDir:         os.Getenv("TASKER_PG_BINDIR"),
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		// Durability buys nothing in a throw-away test cluster.
		Settings: map[string]string{
			"fsync":              "off",
			"synchronous_commit": "off",
			"full_page_writes":   "off",
			"max_connections":    "400",
		},
	})
	if err != nil {
		return "", err
	}
	if err := c.Start(ctx); err != nil {
		return "", err
	}
	cluster = c
	return c.URL("postgres"), nil
}

// ensureTemplate creates the migrated template once per migration set. The
// name carries a hash of the migrations, so a changed schema gets a new
// template; it is built under a temporary name and renamed when complete,
// so a concurrent test process never clones a half-migrated template.
func ensureTemplate(ctx context.Context, admin string) (string, error) {
	name := "taskerd_tmpl_" + migrationsHash()[:16]
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", redact(admin), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext('taskerd.testdb.template'))"); err != nil {
		return "", err
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtext('taskerd.testdb.template'))") //nolint:errcheck
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_building"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", err
	}
	m, err := migrate.New(ctx, migrate.Config{DatabaseURL: WithDatabase(admin, building), Schema: Schema})
	if err != nil {
		return "", err
	}
	err = m.Up(ctx)
	_ = m.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, name)); err != nil {
		return "", err
	}
	return name, nil
}

func migrationsHash() string {
	fsys, err := migrate.Migrations()
	if err != nil {
		panic(err)
	}
	names, _ := fs.Glob(fsys, "*.sql")
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, _ := fs.ReadFile(fsys, n)
		h.Write([]byte(n))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func exec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
