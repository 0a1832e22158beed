// Package server assembles taskerd: the store, the health checker and the
// HTTP API, started in order and stopped in reverse under one deadline.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/taskerd/taskerd/internal/api"
	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/events"
	"github.com/taskerd/taskerd/internal/graphql"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/health"
	"github.com/taskerd/taskerd/internal/leadership"
	"github.com/taskerd/taskerd/internal/maintenance"
	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/registry"
	"github.com/taskerd/taskerd/internal/store"
	"github.com/taskerd/taskerd/internal/telemetry"
	"github.com/taskerd/taskerd/internal/version"
	"github.com/taskerd/taskerd/internal/webhooks"
	"github.com/taskerd/taskerd/internal/workers"
)

// Config configures a Server.
type Config struct {
	// Settings are the parsed settings; required.
	Settings *config.Config
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Listener, when set, is used instead of listening on Settings.HTTPAddr
	// (tests pass one on 127.0.0.1:0).
	Listener net.Listener
	// SpanExporter, when set, receives every span at once instead of the
	// exporter the OTEL_* variables choose (tests).
	SpanExporter sdktrace.SpanExporter
	// Kinds are handler kinds an embedder adds to the built-in ones.
	Kinds []handler.Kind
}

// Server is one taskerd replica.
type Server struct {
	cfg      *config.Config
	logger   *slog.Logger
	store    *store.Store
	health   *health.Checker
	notifier *notifier.Notifier // the replica's one LISTEN connection, shared by its parts
	registry *registry.Registry
	engine   *engine.Engine
	bus      *events.Bus          // the replica's events, to metrics, traces, logs and webhooks
	webhooks *webhooks.Service    // outbound webhooks: subscriptions and the outbox's dispatcher
	tel      *telemetry.Telemetry // metrics registry and tracer provider
	workers  *workers.Service     // remote workers' long polls, heartbeats and outcomes
	elector  *leadership.Elector  // who among the replicas runs maintenance
	upkeep   *maintenance.Runner  // retention and gauges, while this replica leads
	verifier *auth.Verifier       // bearer tokens; nil when TASKER_AUTH_MODE=none
	http     *http.Server
	listener net.Listener

	serveErr chan error
	stopOnce sync.Once
	stopErr  error
}

// New builds the replica's parts without touching the network.
func New(cfg Config) (*Server, error) {
	if cfg.Settings == nil {
		return nil, errors.New("server: Settings is required")
	}
	s := cfg.Settings
	// Every line logged with a context carries the request, correlation,
	// task, step and trace ids the context holds.
	logger := slog.New(telemetry.NewLogHandler(cmp.Or(cfg.Logger, slog.Default()).Handler()))
	st, err := store.New(store.Config{DatabaseURL: s.DatabaseURL, Schema: s.DBSchema, MaxConns: s.DBMaxConns,
		MaxResultBytes: s.MaxResultBytes, Logger: logger})
	if err != nil {
		return nil, err
	}
	cacheTTL := s.StatusCacheTTL
	if cacheTTL == 0 {
		cacheTTL = -1 // 0 means "no cache" in the settings, "default" in health.Config
	}
	checker, err := health.New(health.Config{
		Store:           st,
		RequiredVersion: migrate.LatestVersion(),
		Version:         version.Get().Version,
		ReadyTimeout:    s.ReadyTimeout,
		StatusCacheTTL:  cacheTTL,
		Logger:          logger,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	notes, err := notifier.New(notifier.Config{DatabaseURL: s.DatabaseURL, Logger: logger})
	if err != nil {
		st.Close()
		return nil, err
	}
	httpKind, err := handler.NewHTTP(handler.HTTPConfig{DenyCIDRs: s.HTTPDenyCIDRs, MaxResponseBytes: int64(s.MaxResultBytes)})
	if err != nil {
		st.Close()
		return nil, err
	}
	subtaskKind := handler.NewSubtask() // bound to the engine below
	kinds, err := handler.NewKinds(append(append(handler.Builtins(), httpKind, subtaskKind), cfg.Kinds...)...)
	if err != nil {
		st.Close()
		return nil, err
	}
	obs, err := newObservability(cfg, st, notes, logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	reg, err := registry.New(registry.Config{
		Store: st, Kinds: kinds, Env: s.Env, Notifier: notes, TemplatesDir: s.TemplatesDir, Logger: logger,
		OnChange: obs.registryChanged,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	// A template file that conflicts with the registered version is
	// reported as a warning: the replica keeps serving the registered
	// version and stays ready, so a stale file cannot take a fleet down.
	checker.AddCheck("templates", func(ctx context.Context) error {
		err := reg.Check(ctx)
		if err == nil || errors.Is(err, registry.ErrNotLoaded) {
			return err
		}
		return health.Warn(err)
	})
	eng, err := engine.New(engine.Config{
		Store: st, Templates: reg, Kinds: kinds, Notifier: notes, Schema: s.DBSchema, ReplicaID: s.ReplicaID,
		MaxConcurrentSteps: s.MaxConcurrentSteps, LeaseDuration: s.LeaseDuration, PollInterval: s.PollInterval,
		MaxResultBytes: s.MaxResultBytes, Events: obs.sink, Logger: logger,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	obs.watch(st, eng)
	subtaskKind.Bind(eng)
	remote, err := workers.New(workers.Config{Store: st, Steps: eng, Templates: reg, Notifier: notes, Schema: s.DBSchema,
		ReplicaID: eng.ReplicaID(), PollInterval: s.PollInterval, MaxResultBytes: s.MaxResultBytes, Logger: logger})
	if err != nil {
		st.Close()
		return nil, err
	}
	elector, err := leadership.New(leadership.Config{Store: st, ReplicaID: eng.ReplicaID(), TTL: s.LeaderTTL, Logger: logger})
	if err != nil {
		st.Close()
		return nil, err
	}
	checker.SetLeadership(func() health.Leadership {
		l := elector.Status()
		return health.Leadership{Leader: l.Leader, Holder: l.Holder, ExpiresAt: l.ExpiresAt}
	})
	upkeep, err := maintenance.New(maintenance.Config{Store: st, Elector: elector, Interval: s.MaintenanceInterval,
		RetentionCompleted: forever(s.RetentionCompleted), RetentionFailed: forever(s.RetentionFailed),
		RetentionAudit: forever(s.RetentionAudit), RetentionDeliveries: forever(s.RetentionDeliveries),
		RetentionWorkers: forever(s.RetentionWorkers), Archive: s.Archive == "table",
		Registerer: obs.tel.Registry(), Logger: logger})
	if err != nil {
		st.Close()
		return nil, err
	}
	verifier, err := newVerifier(s, logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	gql, err := graphql.New(graphql.Config{Engine: eng, Store: st, Registry: reg,
		MaxDepth: s.GraphQLMaxDepth, MaxComplexity: s.GraphQLMaxComplexity, Logger: logger})
	if err != nil {
		st.Close()
		return nil, err
	}
	routes, err := api.New(api.Config{Health: checker, Registry: reg, Engine: eng, Store: st, Workers: remote, MaxBodyBytes: s.MaxBodyBytes,
		CORSOrigins: s.CORSOrigins, Telemetry: obs.tel, Webhooks: obs.webhooks, Verifier: verifier,
		HealthStatusAuth: s.HealthStatusAuth, MetricsAuth: s.MetricsAuth, GraphQL: gql, Logger: logger})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Server{
		cfg:      s,
		logger:   logger,
		store:    st,
		health:   checker,
		notifier: notes,
		registry: reg,
		engine:   eng,
		bus:      obs.bus,
		webhooks: obs.webhooks,
		tel:      obs.tel,
		workers:  remote,
		elector:  elector,
		upkeep:   upkeep,
		verifier: verifier,
		http: &http.Server{
			Addr:              s.HTTPAddr,
			Handler:           routes,
			ReadHeaderTimeout: s.HTTPReadHeaderTimeout,
			ReadTimeout:       s.HTTPReadTimeout,
			WriteTimeout:      s.HTTPWriteTimeout,
			IdleTimeout:       s.HTTPIdleTimeout,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		listener: cfg.Listener,
		serveErr: make(chan error, 1),
	}, nil
}

// forever maps the settings' "0 keeps forever" to maintenance's negative.
func forever(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// newVerifier builds the bearer-token verifier of TASKER_AUTH_MODE=jwt,
// with the policy of TASKER_AUTH_POLICY (or the built-in roles); nil when
// authentication is off.
func newVerifier(s *config.Config, logger *slog.Logger) (*auth.Verifier, error) {
	if s.AuthMode != config.AuthJWT {
		return nil, nil
	}
	policy := auth.DefaultPolicy()
	if s.AuthPolicy != "" {
		p, err := auth.LoadPolicy(s.AuthPolicy)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		policy = p
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{
		Secret: s.JWTSecret, PublicKeyFile: s.JWTPublicKeyFile, JWKSFile: s.JWTJWKSFile, JWKSURL: s.JWTJWKSURL,
		JWKSRefresh: s.JWTJWKSRefresh, Issuer: s.JWTIssuer, Audience: s.JWTAudience, Leeway: s.JWTLeeway,
		RolesClaim: s.JWTRolesClaim, Policy: policy, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return v, nil
}

// Migrate applies pending migrations, retrying with backoff while the
// database is unreachable, until it succeeds or ctx ends.
func (s *Server) Migrate(ctx context.Context) error {
	return MigrateWithRetry(ctx, s.logger, migrate.Config{DatabaseURL: s.cfg.DatabaseURL, Schema: s.cfg.DBSchema, Logger: s.logger})
}

// MigrateWithRetry runs `migrate up`, retrying connection failures with
// exponential backoff (capped at 30 s) so that a replica started before its
// database comes up waits instead of crash-looping.
func MigrateWithRetry(ctx context.Context, logger *slog.Logger, cfg migrate.Config) error {
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := migrateOnce(ctx, cfg)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		logger.WarnContext(ctx, "migration failed; retrying", slog.Int("attempt", attempt),
			slog.Duration("retry_in", delay), slog.String("error", err.Error()))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
	}
}

func migrateOnce(ctx context.Context, cfg migrate.Config) error {
	m, err := migrate.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Up(ctx)
}

// Start listens and serves in the background; it returns once the listener
// is open, so a port already in use is reported here.
func (s *Server) Start(ctx context.Context) error {
	if s.listener == nil {
		ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("server: listen on %s: %w", s.cfg.HTTPAddr, err)
		}
		s.listener = ln
	}
	// The JWKS, if any, is fetched before the first request is served.
	if s.verifier != nil {
		if err := s.verifier.Start(ctx); err != nil {
			return fmt.Errorf("server: start auth: %w", err)
		}
	}
	// The registry subscribes before the notifier starts, so the first
	// LISTEN already covers its channel.
	if err := s.registry.Start(ctx); err != nil {
		return fmt.Errorf("server: start registry: %w", err)
	}
	// The bus runs before anything publishes; the webhooks subscribe to
	// their channels before the notifier starts listening.
	if err := s.bus.Start(ctx); err != nil {
		return fmt.Errorf("server: start event bus: %w", err)
	}
	if err := s.webhooks.Start(ctx); err != nil {
		return fmt.Errorf("server: start webhooks: %w", err)
	}
	if err := s.engine.Start(ctx); err != nil {
		return fmt.Errorf("server: start engine: %w", err)
	}
	if err := s.workers.Start(ctx); err != nil {
		return fmt.Errorf("server: start workers: %w", err)
	}
	if err := s.elector.Start(ctx); err != nil {
		return fmt.Errorf("server: start leader election: %w", err)
	}
	if err := s.upkeep.Start(ctx); err != nil {
		return fmt.Errorf("server: start maintenance: %w", err)
	}
	if err := s.notifier.Start(ctx); err != nil {
		return fmt.Errorf("server: start notifier: %w", err)
	}
	s.logger.InfoContext(ctx, "taskerd serving", slog.String("addr", s.listener.Addr().String()),
		slog.String("version", version.Get().Version), slog.String("schema", s.cfg.DBSchema))
	go func() {
		err := s.http.Serve(s.listener)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
	}()
	return nil
}

// Addr is the address the server listens on, once started.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Registry is the replica's template registry.
func (s *Server) Registry() *registry.Registry { return s.registry }

// Engine is the replica's engine (benchmarks and embedders create tasks
// through it directly).
func (s *Server) Engine() *engine.Engine { return s.engine }

// Store is the replica's database access.
func (s *Server) Store() *store.Store { return s.store }

// Handler is the replica's HTTP handler with every route it serves; the
// API's route/spec parity test walks it.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Events is the replica's event bus: subscribe before Start to see
// everything the replica publishes.
func (s *Server) Events() *events.Bus { return s.bus }

// Notifier is the replica's shared LISTEN connection.
func (s *Server) Notifier() *notifier.Notifier { return s.notifier }

// Reload registers the templates folder again (what SIGHUP does).
func (s *Server) Reload() {
	s.logger.Info("reloading templates", slog.String("dir", s.cfg.TemplatesDir))
	s.registry.Reload()
}

// Done reports a server that stopped on its own (not through Stop).
func (s *Server) Done() <-chan error { return s.serveErr }

// Stop shuts down in order: readiness goes 503 first, then the server stops
// accepting and drains in-flight requests until ctx's deadline, then the
// pool closes. Safe to call twice and before Start.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.health.SetShuttingDown()
		// Long-polling claims return now, empty, so the drain is not held
		// for their wait.
		if err := s.workers.Stop(ctx); err != nil {
			s.stopErr = errors.Join(s.stopErr, fmt.Errorf("server: stop workers: %w", err))
		}
		// Maintenance stops first, and the lease is resigned so that another
		// replica takes over at once.
		if err := s.upkeep.Stop(ctx); err != nil {
			s.stopErr = errors.Join(s.stopErr, fmt.Errorf("server: stop maintenance: %w", err))
		}
		if err := s.elector.Stop(ctx); err != nil {
			s.stopErr = errors.Join(s.stopErr, fmt.Errorf("server: stop leader election: %w", err))
		}
		if s.listener != nil {
			if err := s.http.Shutdown(ctx); err != nil {
				s.stopErr = fmt.Errorf("server: drain: %w", err)
				_ = s.http.Close()
			}
		}
		// In-flight steps get what is left of the deadline to finish, less
		// a reserve for the teardowns after them (which publish the
		// engine's last events); the rest are handed back to other
		// replicas. Without the reserve a step that outlasts the deadline
		// leaves them an expired context, and the exit is an error.
		engineCtx, cancel := withReserve(ctx, stopReserve)
		err := s.engine.Stop(engineCtx)
		cancel()
		if err != nil {
			s.stopErr = errors.Join(s.stopErr, fmt.Errorf("server: stop engine: %w", err))
		}
		// Deliveries in flight finish (or are retried after their
		// visibility timeout); the bus delivers what the engine published
		// last, and the spans still buffered are exported.
		if err := s.webhooks.Stop(ctx); err != nil {
			s.stopErr = errors.Join(s.stopErr, fmt.Errorf("server: stop webhooks: %w", err))
		}
		if err := s.bus.Stop(ctx); err != nil {
			s.stopErr = errors.Join(s.stopErr, fmt.Errorf("server: stop event bus: %w", err))
		}
		if err := s.tel.Stop(ctx); err != nil {
			s.stopErr = errors.Join(s.stopErr, fmt.Errorf("server: stop telemetry: %w", err))
		}
		if s.verifier != nil {
			_ = s.verifier.Stop(ctx) // only ends the JWKS refresh; it cannot fail
		}
		if err := s.registry.Stop(ctx); err != nil {
			s.stopErr = errors.Join(s.stopErr, fmt.Errorf("server: stop registry: %w", err))
		}
		if err := s.notifier.Stop(ctx); err != nil {
			s.stopErr = errors.Join(s.stopErr, fmt.Errorf("server: stop notifier: %w", err))
		}
		s.store.Close()
		s.logger.InfoContext(ctx, "taskerd stopped")
	})
	return s.stopErr
}

// stopReserve is the most of the shutdown deadline kept from the engine
// for the teardowns after it; never more than a quarter of what is left.
const stopReserve = time.Second

// withReserve returns ctx with its deadline brought forward by reserve, or
// by a quarter of the time left when that is less; ctx itself when it has
// no deadline.
func withReserve(ctx context.Context, reserve time.Duration) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline.Add(-min(reserve, time.Until(deadline)/4)))
}

// Run starts the server and blocks until ctx is cancelled (a signal) or the
// server fails, then stops it within the shutdown timeout.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	if s.cfg.Migrate {
		// Serving first means probes answer (live 200, ready 503 until the
		// schema is current) while a slow or absent database is waited for.
		go func() {
			if err := s.Migrate(ctx); err != nil && ctx.Err() == nil {
				s.logger.Error("migration failed", slog.String("error", err.Error()))
			}
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
wait:
	for {
		select {
		case <-hup:
			s.Reload()
		case <-ctx.Done():
			s.logger.Info("shutting down", slog.Duration("timeout", s.cfg.ShutdownTimeout))
			break wait
		case runErr = <-s.serveErr:
			break wait
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	return errors.Join(runErr, s.Stop(stopCtx))
}
