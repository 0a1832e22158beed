// Package store owns taskerd's SQL. It is the only package that talks to
// PostgreSQL through pgx; the rest of taskerd sees Go types and the errors
// declared here, never a driver error.
package store

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors the store returns, wrapped with the operation that failed.
var (
	// ErrUnavailable means the database could not be reached or answered too late.
	ErrUnavailable = errors.New("database unavailable")
	// ErrNotMigrated means taskerd's tables are missing: run `taskerd migrate up`.
	ErrNotMigrated = errors.New("database schema is not migrated")
	// ErrNotFound means the row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique or state rule refused the change.
	ErrConflict = errors.New("conflict")
)

// DefaultQueryTimeout bounds each database call that has no shorter deadline.
const DefaultQueryTimeout = 10 * time.Second

// Config configures a Store.
type Config struct {
	// DatabaseURL is the PostgreSQL connection string.
	DatabaseURL string
	// Schema holds every taskerd object; default "tasker".
	Schema string
	// MaxConns is the pool's connection budget; default 20.
	MaxConns int32
	// MaxResultBytes caps the results a finished subtask hands its parent
	// step (TASKER_MAX_RESULT_BYTES, as the engine caps a handler's);
	// larger fails the step for good. Default DefaultMaxResultBytes.
	MaxResultBytes int
	// Tracer sees every statement the pool sends; nil: none. Tests count
	// queries with it (the GraphQL API's batching is asserted that way).
	Tracer pgx.QueryTracer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Store is a pool of connections whose search_path is the taskerd schema.
type Store struct {
	pool           *pgxpool.Pool
	schema         string
	logger         *slog.Logger
	maxResultBytes int
	creates        *createBatcher
	audits         *groupWriter[*auditReq]
}

// DefaultMaxResultBytes is the default of Config.MaxResultBytes, the
// engine's default limit too.
const DefaultMaxResultBytes = 1 << 20

// New prepares the pool. It does not connect: a database that is down at
// start makes the server unready, not dead, and the pool connects when the
// database comes back.
func New(cfg Config) (*Store, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("store: database url is empty (set TASKER_DATABASE_URL or --database-url)")
	}
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		// pgx's message may echo the URL, password included.
		return nil, errors.New("store: database url is not a valid PostgreSQL connection string")
	}
	schema := cmp.Or(cfg.Schema, "tasker")
	poolCfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "taskerd"
	// The engine's statements are short and index-driven, but their row
	// estimates come from unnest() arrays and tables that grow faster than
	// autovacuum analyses them: a stale estimate crossed jit_above_cost and
	// spent 400 ms compiling a 30 ms statement. JIT only pays off for long
	// analytic queries, which taskerd does not run on its pool.
	if _, set := poolCfg.ConnConfig.RuntimeParams["jit"]; !set {
		poolCfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	if cfg.Tracer != nil {
		poolCfg.ConnConfig.Tracer = cfg.Tracer
	}
	poolCfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		registerUUID(conn)
		return nil
	}
	poolCfg.MaxConns = cmp.Or(cfg.MaxConns, 20)
	poolCfg.MinConns = 0
	if poolCfg.ConnConfig.ConnectTimeout == 0 {
		poolCfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), poolCfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{pool: pool, schema: schema, logger: cmp.Or(cfg.Logger, slog.Default()),
		maxResultBytes: cmp.Or(cfg.MaxResultBytes, DefaultMaxResultBytes)}
	s.creates = newCreateBatcher(s)
	// One writer: audit ids follow the order events were recorded.
	s.audits = newGroupWriter(maxAuditBatch, 1, s.writeAudits, func(r *auditReq, err error) { r.done <- err })
	return s, nil
}

// Close closes every connection.
func (s *Store) Close() {
	s.creates.group.close()
	s.audits.close()
	s.pool.Close()
}

// Schema is the schema the store works in.
func (s *Store) Schema() string { return s.schema }

// PoolStats is a snapshot of the connection pool.
type PoolStats struct {
	MaxConns      int32 `json:"max_conns"`
	TotalConns    int32 `json:"total_conns"`
	IdleConns     int32 `json:"idle_conns"`
	AcquiredConns int32 `json:"acquired_conns"`
	AcquireCount  int64 `json:"acquire_count"`
	EmptyAcquires int64 `json:"empty_acquire_count"`
}

// PoolStats reports the pool's counters.
func (s *Store) PoolStats() PoolStats {
	st := s.pool.Stat()
	return PoolStats{
		MaxConns:      st.MaxConns(),
		TotalConns:    st.TotalConns(),
		IdleConns:     st.IdleConns(),
		AcquiredConns: st.AcquiredConns(),
		AcquireCount:  st.AcquireCount(),
		EmptyAcquires: st.EmptyAcquireCount(),
	}
}

//go:embed sql/schema_version.sql
var schemaVersionSQL string

// SchemaVersion is the migration version applied to the database. It doubles
// as the readiness probe's ping: one query proves the database answers and
// tells whether the schema is recent enough.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var v int64
	if err := s.pool.QueryRow(ctx, schemaVersionSQL).Scan(&v); err != nil {
		if isUndefinedTable(err) {
			return 0, fmt.Errorf("schema version: %w", ErrNotMigrated)
		}
		return 0, translate("schema version", err)
	}
	return v, nil
}

// HealthCounts is one row of get_system_health_counts().
type HealthCounts struct {
	Tasks, Steps                                 StateCounts
	RetryableErrors, ExhaustedRetries, InBackoff int64
	ActiveConnections, MaxConnections            int64
}

// StateCounts counts rows by state.
type StateCounts struct {
	Total, Pending, InProgress, Complete, Error, Cancelled, ResolvedManually int64
}

//go:embed sql/system_health_counts.sql
var systemHealthCountsSQL string

// HealthCounts runs get_system_health_counts(). It scans the task tables, so
// callers cache the answer.
func (s *Store) HealthCounts(ctx context.Context) (HealthCounts, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var h HealthCounts
	t, st := &h.Tasks, &h.Steps
	err := s.pool.QueryRow(ctx, systemHealthCountsSQL).Scan(
		&t.Total, &t.Pending, &t.InProgress, &t.Complete, &t.Error, &t.Cancelled, &t.ResolvedManually,
		&st.Total, &st.Pending, &st.InProgress, &st.Complete, &st.Error, &st.Cancelled, &st.ResolvedManually,
		&h.RetryableErrors, &h.ExhaustedRetries, &h.InBackoff, &h.ActiveConnections, &h.MaxConnections,
	)
	if err != nil {
		if isUndefinedTable(err) {
			return h, fmt.Errorf("health counts: %w", ErrNotMigrated)
		}
		return h, translate("health counts", err)
	}
	return h, nil
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultQueryTimeout)
}

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42883" || pgErr.Code == "3F000")
}

// translate turns a driver error into one of the store's errors, keeping the
// cause's text for logs. Connection failures and timeouts become
// ErrUnavailable so the API can answer 503 instead of 500.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return fmt.Errorf("%s: %w: %s", op, ErrConflict, pgErr.Message)
		case pgErr.Code[:2] == "08" || pgErr.Code[:2] == "57" || pgErr.Code == "53300":
			// connection exceptions, operator intervention (shutdown, cancel), too many connections
			return fmt.Errorf("%s: %w: %s", op, ErrUnavailable, pgErr.Message)
		}
		return fmt.Errorf("%s: %s (SQLSTATE %s)", op, pgErr.Message, pgErr.Code)
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) || isConnectError(err) {
		return fmt.Errorf("%s: %w: %v", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}
