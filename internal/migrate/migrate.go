// Package migrate applies taskerd's embedded schema migrations with goose.
//
// Migrations are plain SQL files in db/migrations. Views and functions live in
// their own files (db/views, db/functions) and a migration installs one with a
// line "-- +taskerd include views/NAME.sql"; the include is expanded before
// goose reads the migration, so `migrate up` on an empty database installs
// everything (Tasker 2.5.0 shipped an installer that forgot its views and
// functions).
package migrate

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"

	"github.com/taskerd/taskerd/db"
)

// VersionTable is the goose bookkeeping table, created in the taskerd schema.
const VersionTable = "goose_db_version"

const includeDirective = "-- +taskerd include "

// Config configures a Migrator.
type Config struct {
	// DatabaseURL is the PostgreSQL connection string.
	DatabaseURL string
	// Schema is the schema holding every taskerd object; default "tasker".
	Schema string
	// Logger receives one line per applied migration; nil means slog.Default().
	Logger *slog.Logger
}

// Migrator applies, reverts and reports migrations.
type Migrator struct {
	db       *sql.DB
	schema   string
	provider *goose.Provider
}

// Status is the state of one migration.
type Status struct {
	Version int64
	Name    string
	Applied bool
}

// New connects to the database and prepares the embedded migrations. The
// caller must Close the Migrator.
func New(ctx context.Context, cfg Config) (*Migrator, error) {
	schema := cmp.Or(cfg.Schema, "tasker")
	if err := ValidateSchemaName(schema); err != nil {
		return nil, err
	}
	logger := cmp.Or(cfg.Logger, slog.Default())
	connCfg, err := pgx.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("migrate: parse database url: %w", err)
	}
	// Every unqualified name in a migration resolves to the taskerd schema.
	connCfg.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	sqlDB := stdlib.OpenDB(*connCfg)
	m := &Migrator{db: sqlDB, schema: schema}
	if err := m.init(ctx, logger); err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	return m, nil
}

func (m *Migrator) init(ctx context.Context, logger *slog.Logger) error {
	// IF NOT EXISTS is not safe against a concurrent creator (two replicas
	// starting at once collide on pg_namespace's unique index), so that
	// collision is taken as "it exists now".
	if _, err := m.db.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{m.schema}.Sanitize()); err != nil && !alreadyExists(err) {
		return fmt.Errorf("migrate: create schema %q: %w", m.schema, err)
	}
	fsys, err := Migrations()
	if err != nil {
		return err
	}
	store, err := database.NewStore(database.DialectPostgres, m.schema+"."+VersionTable)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// One advisory lock per schema: replicas or Jobs migrating at once wait
	// for each other instead of racing.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(LockID(m.schema)))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	provider, err := goose.NewProvider("", m.db, fsys,
		goose.WithStore(store),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(logger.With(slog.String("component", "migrate"))),
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	m.provider = provider
	return nil
}

// Close releases the database connection.
func (m *Migrator) Close() error { return m.db.Close() }

// Up applies every pending migration.
func (m *Migrator) Up(ctx context.Context) error {
	_, err := m.provider.Up(ctx)
	return wrap("up", err)
}

// UpTo applies pending migrations up to and including version.
func (m *Migrator) UpTo(ctx context.Context, version int64) error {
	_, err := m.provider.UpTo(ctx, version)
	return wrap("up", err)
}

// DownTo reverts applied migrations above version (0 reverts all).
func (m *Migrator) DownTo(ctx context.Context, version int64) error {
	_, err := m.provider.DownTo(ctx, version)
	return wrap("down", err)
}

// Down reverts the most recent migration.
func (m *Migrator) Down(ctx context.Context) error {
	_, err := m.provider.Down(ctx)
	if errors.Is(err, goose.ErrNoNextVersion) {
		return nil
	}
	return wrap("down", err)
}

// Version is the version the database is at; 0 for an empty database.
func (m *Migrator) Version(ctx context.Context) (int64, error) {
	v, err := m.provider.GetDBVersion(ctx)
	return v, wrap("version", err)
}

// Status lists every embedded migration and whether it is applied.
func (m *Migrator) Status(ctx context.Context) ([]Status, error) {
	list, err := m.provider.Status(ctx)
	if err != nil {
		return nil, wrap("status", err)
	}
	out := make([]Status, 0, len(list))
	for _, s := range list {
		out = append(out, Status{
			Version: s.Source.Version,
			Name:    path.Base(s.Source.Path),
			Applied: s.State == goose.StateApplied,
		})
	}
	return out, nil
}

func alreadyExists(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P06")
}

func wrap(op string, err error) error {
	if err == nil || errors.Is(err, goose.ErrNoMigrations) {
		return nil
	}
	return fmt.Errorf("migrate %s: %w", op, err)
}

// LatestVersion is the highest migration version embedded in this binary:
// the schema version the binary needs.
func LatestVersion() int64 {
	fsys, err := Migrations()
	if err != nil {
		return 0
	}
	var latest int64
	names, _ := fs.Glob(fsys, "*.sql")
	for _, name := range names {
		if v, err := goose.NumericComponent(name); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// LockID is the advisory lock key that serialises migrations of one schema.
func LockID(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("taskerd.migrate." + schema))
	return int64(h.Sum64() >> 1)
}

// ValidateSchemaName accepts lower-case SQL identifiers only, so the name
// never needs quoting in connection strings and psql sessions.
func ValidateSchemaName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("schema name must be 1 to 63 characters")
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("schema name %q must match [a-z_][a-z0-9_]*", s)
		}
	}
	return nil
}

// Migrations returns the migration files with their includes expanded, as
// goose reads them.
func Migrations() (fs.FS, error) {
	names, err := fs.Glob(db.FS, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	out := fstest.MapFS{}
	for _, name := range names {
		src, err := fs.ReadFile(db.FS, name)
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		expanded, err := expandIncludes(src)
		if err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", name, err)
		}
		out[path.Base(name)] = &fstest.MapFile{Data: expanded, Mode: 0o444}
	}
	return out, nil
}

func expandIncludes(src []byte) ([]byte, error) {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		target, ok := strings.CutPrefix(strings.TrimSpace(line), includeDirective)
		if !ok {
			out.WriteString(line)
			out.WriteByte('\n')
			continue
		}
		body, err := fs.ReadFile(db.FS, path.Clean(strings.TrimSpace(target)))
		if err != nil {
			return nil, fmt.Errorf("include %q: %w", target, err)
		}
		out.Write(body)
		if !bytes.HasSuffix(body, []byte("\n")) {
			out.WriteByte('\n')
		}
	}
	return out.Bytes(), sc.Err()
}
