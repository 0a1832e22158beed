// Package config reads taskerd's settings: command-line flags override
// TASKER_* environment variables, which override defaults. Every setting is
// declared once, in the table below, so --help, the README table and the
// parser cannot drift apart.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/migrate"
)

// Config is the parsed set of settings. Zero values are never used: Parse
// fills every field from a flag, a variable or the default.
type Config struct {
	DatabaseURL           string
	HTTPAddr              string
	LogLevel              slog.Level
	LogFormat             string
	ShutdownTimeout       time.Duration
	DBSchema              string
	DBMaxConns            int32
	MaxBodyBytes          int64
	GraphQLMaxDepth       int
	GraphQLMaxComplexity  int
	Env                   string
	TemplatesDir          string
	Migrate               bool
	ReadyTimeout          time.Duration
	StatusCacheTTL        time.Duration
	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPWriteTimeout      time.Duration
	HTTPIdleTimeout       time.Duration
	CORSOrigins           []string
	MaxConcurrentSteps    int
	LeaseDuration         time.Duration
	MaintenanceInterval   time.Duration
	LeaderTTL             time.Duration
	RetentionCompleted    time.Duration
	RetentionFailed       time.Duration
	RetentionAudit        time.Duration
	RetentionDeliveries   time.Duration
	RetentionWorkers      time.Duration
	Archive               string
	PollInterval          time.Duration
	MaxResultBytes        int
	HTTPDenyCIDRs         []netip.Prefix
	EventBuffer           int
	WebhookTimeout        time.Duration
	WebhookMaxAttempts    int
	ReplicaID             string
	PGDir                 string
	PGPort                int
	PGBinDir              string
	AuthMode              string
	InsecureNoAuth        bool
	AuthPolicy            string
	JWTSecret             string
	JWTPublicKeyFile      string
	JWTJWKSFile           string
	JWTJWKSURL            string
	JWTJWKSRefresh        time.Duration
	JWTIssuer             string
	JWTAudience           string
	JWTRolesClaim         string
	JWTLeeway             time.Duration
	HealthStatusAuth      bool
	MetricsAuth           bool
}

// Authentication modes (TASKER_AUTH_MODE).
const (
	AuthNone = "none"
	AuthJWT  = "jwt"
)

// ErrInsecureNoAuth is CheckServeAuth's answer to `serve` without
// authentication and without the explicit opt-out.
var ErrInsecureNoAuth = errors.New("authentication is off (TASKER_AUTH_MODE=none): set TASKER_AUTH_MODE=jwt with a key " +
	"(see docs/auth.md), or pass --insecure-no-auth (TASKER_INSECURE_NO_AUTH=true) to serve the API to anyone who can reach it")

// CheckServeAuth refuses to serve with authentication off unless the
// operator said so explicitly: an unauthenticated API that controls
// business workflows must never be an accident.
func (c *Config) CheckServeAuth() error {
	if c.AuthMode == AuthNone && !c.InsecureNoAuth {
		return ErrInsecureNoAuth
	}
	return nil
}

// Setting is one configurable value.
type Setting struct {
	Flag    string // without dashes
	Env     string
	Default string
	Usage   string
	Bool    bool // a flag that may be given without a value
	Secret  bool // its value is never echoed in errors
	set     func(c *Config, v string) error
}

// Settings lists every setting taskerd knows, in the order --help shows them.
var Settings = []Setting{
	{Flag: "database-url", Env: "TASKER_DATABASE_URL", Usage: "PostgreSQL connection URL (postgres://user:pass@host:5432/db)",
		set: func(c *Config, v string) error { c.DatabaseURL = v; return nil }},
	{Flag: "http-addr", Env: "TASKER_HTTP_ADDR", Default: ":8080", Usage: "address the HTTP server listens on",
		set: func(c *Config, v string) error {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return errors.New("want host:port, e.g. :8080 or 127.0.0.1:8080")
			}
			c.HTTPAddr = v
			return nil
		}},
	{Flag: "log-level", Env: "TASKER_LOG_LEVEL", Default: "info", Usage: "debug, info, warn or error",
		set: func(c *Config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
	{Flag: "log-format", Env: "TASKER_LOG_FORMAT", Default: "json", Usage: "json or text",
		set: func(c *Config, v string) error {
			c.LogFormat = strings.ToLower(v)
			return oneOf(c.LogFormat, "json", "text")
		}},
	{Flag: "shutdown-timeout", Env: "TASKER_SHUTDOWN_TIMEOUT", Default: "30s", Usage: "how long shutdown waits for in-flight work",
		set: func(c *Config, v string) error { return positiveDuration(&c.ShutdownTimeout, v) }},
	{Flag: "db-schema", Env: "TASKER_DB_SCHEMA", Default: "tasker", Usage: "PostgreSQL schema holding every taskerd object",
		set: func(c *Config, v string) error {
			if err := migrate.ValidateSchemaName(v); err != nil {
				return err
			}
			c.DBSchema = v
			return nil
		}},
	{Flag: "db-max-conns", Env: "TASKER_DB_MAX_CONNS", Default: "20", Usage: "connections the pool may open (the replica's budget)",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 2, 10000)
			c.DBMaxConns = int32(n)
			return err
		}},
	{Flag: "max-body-bytes", Env: "TASKER_MAX_BODY_BYTES", Default: "1048576", Usage: "largest request body accepted (413 above)",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1024, 1<<30)
			c.MaxBodyBytes = int64(n)
			return err
		}},
	{Flag: "graphql-max-depth", Env: "TASKER_GRAPHQL_MAX_DEPTH", Default: "10", Usage: "deepest nesting of a GraphQL query's selections",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 2, 100)
			c.GraphQLMaxDepth = n
			return err
		}},
	{Flag: "graphql-max-complexity", Env: "TASKER_GRAPHQL_MAX_COMPLEXITY", Default: "20000", Usage: "highest estimated cost of a GraphQL query",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 10, 10_000_000)
			c.GraphQLMaxComplexity = n
			return err
		}},
	{Flag: "env", Env: "TASKER_ENV", Usage: "environment name that selects a template's environments overlay",
		set: func(c *Config, v string) error { c.Env = v; return nil }},
	{Flag: "templates-dir", Env: "TASKER_TEMPLATES_DIR", Usage: "folder of task template files loaded at start",
		set: func(c *Config, v string) error { c.TemplatesDir = v; return nil }},
	{Flag: "migrate", Env: "TASKER_MIGRATE", Default: "false", Bool: true, Usage: "apply pending migrations before serving",
		set: func(c *Config, v string) error { return parseBool(&c.Migrate, v) }},
	{Flag: "ready-timeout", Env: "TASKER_READY_TIMEOUT", Default: "5s", Usage: "how long the readiness check waits for the database",
		set: func(c *Config, v string) error { return positiveDuration(&c.ReadyTimeout, v) }},
	{Flag: "status-cache", Env: "TASKER_STATUS_CACHE", Default: "15s", Usage: "how long /tasker/health/status answers from its cache",
		set: func(c *Config, v string) error { return nonNegativeDuration(&c.StatusCacheTTL, v) }},
	{Flag: "http-read-header-timeout", Env: "TASKER_HTTP_READ_HEADER_TIMEOUT", Default: "5s", Usage: "time to read a request's headers",
		set: func(c *Config, v string) error { return positiveDuration(&c.HTTPReadHeaderTimeout, v) }},
	{Flag: "http-read-timeout", Env: "TASKER_HTTP_READ_TIMEOUT", Default: "30s", Usage: "time to read a whole request",
		set: func(c *Config, v string) error { return positiveDuration(&c.HTTPReadTimeout, v) }},
	{Flag: "http-write-timeout", Env: "TASKER_HTTP_WRITE_TIMEOUT", Default: "60s", Usage: "time to write a response (above the longest long-poll)",
		set: func(c *Config, v string) error { return positiveDuration(&c.HTTPWriteTimeout, v) }},
	{Flag: "http-idle-timeout", Env: "TASKER_HTTP_IDLE_TIMEOUT", Default: "120s", Usage: "how long an idle keep-alive connection stays open",
		set: func(c *Config, v string) error { return positiveDuration(&c.HTTPIdleTimeout, v) }},
	{Flag: "cors-origins", Env: "TASKER_CORS_ORIGINS", Usage: "comma-separated origins whose pages may call the API from a browser (https://ops.example.com, or *); empty: CORS off",
		set: func(c *Config, v string) error {
			c.CORSOrigins = nil
			for o := range strings.SplitSeq(v, ",") {
				if o = strings.TrimSpace(o); o == "" {
					continue
				}
				if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
					return fmt.Errorf("%q is not an origin such as https://ops.example.com, or *", o)
				}
				c.CORSOrigins = append(c.CORSOrigins, o)
			}
			return nil
		}},
	{Flag: "max-concurrent-steps", Env: "TASKER_MAX_CONCURRENT_STEPS", Default: "256", Usage: "step handlers this replica runs at once (and the most steps one claim takes)",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1, 100000)
			c.MaxConcurrentSteps = n
			return err
		}},
	{Flag: "lease-duration", Env: "TASKER_LEASE_DURATION", Default: "30s", Usage: "how long a claimed step is held without renewal (renewed every third)",
		set: func(c *Config, v string) error {
			if err := positiveDuration(&c.LeaseDuration, v); err != nil {
				return err
			}
			if c.LeaseDuration < time.Second {
				return errors.New("must be at least 1s")
			}
			return nil
		}},
	{Flag: "maintenance-interval", Env: "TASKER_MAINTENANCE_INTERVAL", Default: "1m", Usage: "how often the elected leader runs retention and computes the database-wide gauges",
		set: func(c *Config, v string) error { return positiveDuration(&c.MaintenanceInterval, v) }},
	{Flag: "leader-ttl", Env: "TASKER_LEADER_TTL", Default: "15s", Usage: "how long the maintenance leader's lease lasts unrenewed (another replica takes over within it)",
		set: func(c *Config, v string) error {
			if err := positiveDuration(&c.LeaderTTL, v); err != nil {
				return err
			}
			if c.LeaderTTL < time.Second {
				return errors.New("must be at least 1s")
			}
			return nil
		}},
	{Flag: "retention-completed", Env: "TASKER_RETENTION_COMPLETED", Default: "720h", Usage: "keep complete, cancelled and resolved tasks this long after they finished (0: forever)",
		set: func(c *Config, v string) error { return retention(&c.RetentionCompleted, v) }},
	{Flag: "retention-failed", Env: "TASKER_RETENTION_FAILED", Default: "2160h", Usage: "keep tasks in error this long after they failed (0: forever)",
		set: func(c *Config, v string) error { return retention(&c.RetentionFailed, v) }},
	{Flag: "retention-audit", Env: "TASKER_RETENTION_AUDIT", Default: "8760h", Usage: "keep audit-trail rows this long (0: forever)",
		set: func(c *Config, v string) error { return retention(&c.RetentionAudit, v) }},
	{Flag: "retention-webhook-deliveries", Env: "TASKER_RETENTION_WEBHOOK_DELIVERIES", Default: "168h", Usage: "keep finished webhook deliveries (outbox rows and their attempts) this long (0: forever)",
		set: func(c *Config, v string) error { return retention(&c.RetentionDeliveries, v) }},
	{Flag: "retention-workers", Env: "TASKER_RETENTION_WORKERS", Default: "24h", Usage: "keep remote workers listed this long after they were last seen (0: forever)",
		set: func(c *Config, v string) error { return retention(&c.RetentionWorkers, v) }},
	{Flag: "archive", Env: "TASKER_ARCHIVE", Default: "none", Usage: "none, or table: retention copies tasks with their steps, edges and transitions to the *_archive tables in the transaction that deletes them",
		set: func(c *Config, v string) error {
			c.Archive = strings.ToLower(v)
			return oneOf(c.Archive, "none", "table")
		}},
	{Flag: "poll-interval", Env: "TASKER_POLL_INTERVAL", Default: "5s", Usage: "fallback poll for runnable steps when no notification arrives",
		set: func(c *Config, v string) error { return positiveDuration(&c.PollInterval, v) }},
	{Flag: "max-result-bytes", Env: "TASKER_MAX_RESULT_BYTES", Default: "1048576", Usage: "largest step results kept; larger fails the step",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 64, 64<<20)
			c.MaxResultBytes = n
			return err
		}},
	{Flag: "http-deny-cidrs", Env: "TASKER_HTTP_DENY_CIDRS", Default: joinPrefixes(handler.DefaultDenyCIDRs),
		Usage: "networks http steps and webhooks may not call (link-local and cloud metadata); none: no limit",
		set: func(c *Config, v string) error {
			p, err := handler.ParseCIDRs(v)
			c.HTTPDenyCIDRs = p
			return err
		}},
	{Flag: "event-buffer", Env: "TASKER_EVENT_BUFFER", Default: "10000", Usage: "events each event subscriber (metrics, traces, logs, webhooks) may queue; beyond, events are dropped and counted",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 100, 10_000_000)
			c.EventBuffer = n
			return err
		}},
	{Flag: "webhook-timeout", Env: "TASKER_WEBHOOK_TIMEOUT", Default: "10s", Usage: "how long a webhook receiver has to answer one delivery",
		set: func(c *Config, v string) error { return positiveDuration(&c.WebhookTimeout, v) }},
	{Flag: "webhook-max-attempts", Env: "TASKER_WEBHOOK_MAX_ATTEMPTS", Default: "10", Usage: "attempts per webhook delivery (backoff 5s doubling, capped at 1h) before it fails for good",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1, 100)
			c.WebhookMaxAttempts = n
			return err
		}},
	{Flag: "replica-id", Env: "TASKER_REPLICA_ID", Usage: "this replica's name in leases and transitions (default: host-pid-random)",
		set: func(c *Config, v string) error { c.ReplicaID = v; return nil }},
	{Flag: "pg-dir", Env: "TASKER_PG_DIR", Default: ".taskerd/pg", Usage: "dev: folder of the private PostgreSQL cluster",
		set: func(c *Config, v string) error { c.PGDir = v; return nonEmpty(v) }},
	{Flag: "pg-port", Env: "TASKER_PG_PORT", Default: "0", Usage: "dev: port of the private PostgreSQL (0: the last one used, or a free one)",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 0, 65535)
			c.PGPort = n
			return err
		}},
	{Flag: "pg-bindir", Env: "TASKER_PG_BINDIR", Usage: "dev: folder holding postgres and initdb (default: the newest found)",
		set: func(c *Config, v string) error { c.PGBinDir = v; return nil }},
	{Flag: "auth-mode", Env: "TASKER_AUTH_MODE", Default: AuthNone, Usage: "none or jwt; serve refuses none unless TASKER_INSECURE_NO_AUTH is true (docs/auth.md)",
		set: func(c *Config, v string) error {
			c.AuthMode = strings.ToLower(v)
			return oneOf(c.AuthMode, AuthNone, AuthJWT)
		}},
	{Flag: "insecure-no-auth", Env: "TASKER_INSECURE_NO_AUTH", Default: "false", Bool: true, Usage: "serve: allow TASKER_AUTH_MODE=none, an API open to anyone who can reach it",
		set: func(c *Config, v string) error { return parseBool(&c.InsecureNoAuth, v) }},
	{Flag: "auth-policy", Env: "TASKER_AUTH_POLICY", Usage: "YAML file mapping roles to permissions (default: built-in admin and viewer)",
		set: func(c *Config, v string) error { c.AuthPolicy = v; return nil }},
	{Flag: "jwt-secret", Env: "TASKER_JWT_SECRET", Secret: true, Usage: "HS256 key, at least 32 bytes (prefer the variable: flags show in ps)",
		set: func(c *Config, v string) error {
			if v != "" && len(v) < 32 {
				return errors.New("must be at least 32 bytes")
			}
			c.JWTSecret = v
			return nil
		}},
	{Flag: "jwt-public-key-file", Env: "TASKER_JWT_PUBLIC_KEY_FILE", Usage: "PEM public key verifying RS256, ES256 or EdDSA tokens",
		set: func(c *Config, v string) error { c.JWTPublicKeyFile = v; return nil }},
	{Flag: "jwt-jwks-file", Env: "TASKER_JWT_JWKS_FILE", Usage: "JSON Web Key Set file verifying RS256, ES256 or EdDSA tokens",
		set: func(c *Config, v string) error { c.JWTJWKSFile = v; return nil }},
	{Flag: "jwt-jwks-url", Env: "TASKER_JWT_JWKS_URL", Usage: "JSON Web Key Set URL, refreshed in the background",
		set: func(c *Config, v string) error { c.JWTJWKSURL = v; return nil }},
	{Flag: "jwt-jwks-refresh", Env: "TASKER_JWT_JWKS_REFRESH", Default: "10m", Usage: "how often the JWKS URL is fetched again",
		set: func(c *Config, v string) error { return positiveDuration(&c.JWTJWKSRefresh, v) }},
	{Flag: "jwt-issuer", Env: "TASKER_JWT_ISSUER", Usage: "required iss of tokens (jwt mode)",
		set: func(c *Config, v string) error { c.JWTIssuer = v; return nil }},
	{Flag: "jwt-audience", Env: "TASKER_JWT_AUDIENCE", Usage: "required aud of tokens (jwt mode)",
		set: func(c *Config, v string) error { c.JWTAudience = v; return nil }},
	{Flag: "jwt-roles-claim", Env: "TASKER_JWT_ROLES_CLAIM", Default: "roles", Usage: "claim holding the caller's roles (dots walk into objects: realm_access.roles)",
		set: func(c *Config, v string) error { c.JWTRolesClaim = v; return nonEmpty(v) }},
	{Flag: "jwt-leeway", Env: "TASKER_JWT_LEEWAY", Default: "30s", Usage: "clock skew tolerated on exp, nbf and iat (at most 5m)",
		set: func(c *Config, v string) error {
			if err := nonNegativeDuration(&c.JWTLeeway, v); err != nil {
				return err
			}
			if c.JWTLeeway > 5*time.Minute {
				return errors.New("at most 5m")
			}
			return nil
		}},
	{Flag: "health-status-auth", Env: "TASKER_HEALTH_STATUS_AUTH", Default: "true", Bool: true, Usage: "/tasker/health/status needs tasker.health_status:index (live and ready stay open)",
		set: func(c *Config, v string) error { return parseBool(&c.HealthStatusAuth, v) }},
	{Flag: "metrics-auth", Env: "TASKER_METRICS_AUTH", Default: "false", Bool: true, Usage: "/tasker/metrics needs tasker.metrics:index",
		set: func(c *Config, v string) error { return parseBool(&c.MetricsAuth, v) }},
}

// authSettings are the authentication settings of serve and dev.
var authSettings = []string{"auth-mode", "auth-policy", "jwt-secret", "jwt-public-key-file", "jwt-jwks-file", "jwt-jwks-url",
	"jwt-jwks-refresh", "jwt-issuer", "jwt-audience", "jwt-roles-claim", "jwt-leeway", "health-status-auth", "metrics-auth"}

// Server lists the settings of `taskerd serve`.
var Server = append([]string{
	"database-url", "http-addr", "log-level", "log-format", "shutdown-timeout", "db-schema", "db-max-conns",
	"max-body-bytes", "env", "templates-dir", "migrate", "ready-timeout", "status-cache",
	"http-read-header-timeout", "http-read-timeout", "http-write-timeout", "http-idle-timeout", "cors-origins",
	"max-concurrent-steps", "lease-duration", "poll-interval", "max-result-bytes", "replica-id",
	"http-deny-cidrs", "event-buffer", "webhook-timeout", "webhook-max-attempts", "insecure-no-auth",
	"maintenance-interval", "leader-ttl", "retention-completed", "retention-failed",
	"retention-audit", "retention-webhook-deliveries", "retention-workers", "archive",
}, authSettings...)

// Dev lists the settings of `taskerd dev`: the server's, less the database
// URL and --migrate (dev makes both) and --insecure-no-auth (dev allows
// TASKER_AUTH_MODE=none with a warning), plus the private cluster's.
var Dev = append(without(Server, "database-url", "migrate", "insecure-no-auth"), "pg-dir", "pg-port", "pg-bindir")

// Migrate lists the settings of `taskerd migrate`.
var Migrate = []string{"database-url", "db-schema", "log-level", "log-format"}

func without(list []string, drop ...string) []string {
	var out []string
	for _, s := range list {
		keep := true
		for _, d := range drop {
			keep = keep && s != d
		}
		if keep {
			out = append(out, s)
		}
	}
	return out
}

// Error reports a setting whose value is not acceptable.
type Error struct {
	Flag, Env, Value string
	Err              error
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid setting %s (--%s) = %q: %v", e.Env, e.Flag, e.Value, e.Err)
}

// redacted stands for the value of a secret setting in errors.
const redacted = "[redacted]"

func (e *Error) Unwrap() error { return e.Err }

// LookupEnv reads an environment variable; os.LookupEnv in production.
type LookupEnv func(string) (string, bool)

// Parser binds a subset of Settings to a FlagSet.
type Parser struct {
	fs       *flag.FlagSet
	settings []Setting
	values   map[string]*flagValue
}

type flagValue struct {
	s     string
	isSet bool
	bool  bool
}

func (v *flagValue) String() string     { return v.s }
func (v *flagValue) Set(s string) error { v.s, v.isSet = s, true; return nil }
func (v *flagValue) IsBoolFlag() bool   { return v.bool }

// NewParser declares the named settings as flags on fs and writes a usage
// text that names each variable and default. It panics on an unknown name:
// that is a programming error.
func NewParser(fs *flag.FlagSet, names []string) *Parser {
	p := &Parser{fs: fs, values: map[string]*flagValue{}}
	for _, name := range names {
		s, ok := lookup(name)
		if !ok {
			panic("config: unknown setting " + name)
		}
		v := &flagValue{bool: s.Bool}
		fs.Var(v, s.Flag, s.Usage)
		p.settings = append(p.settings, s)
		p.values[s.Flag] = v
	}
	return p
}

func lookup(name string) (Setting, bool) {
	for _, s := range Settings {
		if s.Flag == name {
			return s, true
		}
	}
	return Setting{}, false
}

// PrintSettings writes one line per setting: flag, variable, default, usage.
func (p *Parser) PrintSettings(w io.Writer) {
	for _, s := range p.settings {
		def := s.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%-26s %-33s default %-14s %s\n", s.Flag, s.Env, def, s.Usage)
	}
}

// Parse parses args (after the subcommand name) and resolves every setting:
// flag, else variable, else default. The first bad value is an *Error.
func (p *Parser) Parse(args []string, env LookupEnv) (*Config, error) {
	if err := p.fs.Parse(args); err != nil {
		return nil, err
	}
	c := &Config{}
	// Defaults first so that settings which were not declared for this
	// subcommand still hold sane values.
	for _, s := range Settings {
		if err := s.set(c, s.Default); err != nil {
			panic(fmt.Sprintf("config: default of %s is invalid: %v", s.Flag, err))
		}
	}
	for _, s := range p.settings {
		v := s.Default
		if ev, ok := env(s.Env); ok {
			v = ev
		}
		if fv := p.values[s.Flag]; fv.isSet {
			v = fv.s
		}
		if err := s.set(c, strings.TrimSpace(v)); err != nil {
			if s.Secret {
				v = redacted
			}
			return nil, &Error{Flag: s.Flag, Env: s.Env, Value: v, Err: err}
		}
	}
	return c, nil
}

func joinPrefixes(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func oneOf(v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(allowed, ", "))
}

func nonEmpty(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func positiveDuration(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration such as 500ms, 30s or 5m")
	}
	if d <= 0 {
		return errors.New("must be above zero")
	}
	*dst = d
	return nil
}

func nonNegativeDuration(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration such as 500ms, 30s or 5m")
	}
	if d < 0 {
		return errors.New("must not be negative")
	}
	*dst = d
	return nil
}

func intIn(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errors.New("want a whole number")
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("want a number from %d to %d", lo, hi)
	}
	return n, nil
}

func parseBool(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("want true or false")
	}
	*dst = b
	return nil
}

// retention parses a retention period: a duration, where 0 means forever.
func retention(dst *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration such as 720h, or 0 for forever")
	}
	if d < 0 {
		return errors.New("must not be negative (0 keeps forever)")
	}
	if d > 0 && d < time.Minute {
		return errors.New("must be at least 1m, or 0 for forever")
	}
	*dst = d
	return nil
}
