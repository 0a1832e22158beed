package auth

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Defaults of VerifierConfig.
const (
	DefaultLeeway      = 30 * time.Second
	DefaultRolesClaim  = "roles"
	DefaultJWKSRefresh = 10 * time.Minute
	// MinSecretBytes is the shortest HS256 secret accepted: RFC 7518 §3.2
	// asks for a key at least as long as the hash.
	MinSecretBytes = 32
	// MaxLeeway bounds the clock skew tolerated on exp, nbf and iat.
	MaxLeeway = 5 * time.Minute
)

// Algorithms a verifier may accept, by key kind. Nothing else is ever
// accepted: not "none", not HS256 where a public key is configured (the
// algorithm-confusion attack), not RS256 where a secret is.
var (
	secretAlgorithms    = []string{"HS256"}
	publicKeyAlgorithms = []string{"RS256", "ES256", "EdDSA"}
)

// VerifierConfig configures a Verifier. Exactly one key source is set:
// Secret, PublicKeyFile, JWKSFile or JWKSURL.
type VerifierConfig struct {
	// Secret is the HS256 key, at least 32 bytes.
	Secret string
	// PublicKeyFile is a PEM file holding an RSA (RS256), P-256 (ES256) or
	// Ed25519 (EdDSA) public key, or a certificate carrying one.
	PublicKeyFile string
	// JWKSFile is a JSON Web Key Set file, read once at start.
	JWKSFile string
	// JWKSURL is a JSON Web Key Set fetched at Start and refreshed every
	// JWKSRefresh in the background; a token whose kid is unknown triggers
	// an early refresh (rate-limited).
	JWKSURL string
	// JWKSRefresh is the JWKS URL's refresh interval; default 10m.
	JWKSRefresh time.Duration
	// Issuer must equal the token's iss; required.
	Issuer string
	// Audience must be in the token's aud; required.
	Audience string
	// Leeway tolerates clock skew on exp, nbf and iat; default 30s, at most 5m.
	Leeway time.Duration
	// RolesClaim names the claim holding the roles (a list, or a string of
	// space-separated roles); dots walk into objects, e.g.
	// realm_access.roles. Default "roles".
	RolesClaim string
	// Policy maps roles to grants; default DefaultPolicy().
	Policy *Policy
	// HTTPClient fetches the JWKS URL; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Bearer error codes of RFC 6750 §3.1.
const (
	CodeInvalidRequest = "invalid_request"
	CodeInvalidToken   = "invalid_token"
)

// TokenError says why a request was not authenticated. Code goes to the
// client in WWW-Authenticate; Reason only to the logs, since it could help
// an attacker tune a forged token.
type TokenError struct {
	// Code is "" when no token came at all, else a Bearer error code.
	Code   string
	Reason string
	Err    error
}

func (e *TokenError) Error() string {
	if e.Err != nil {
		return "auth: " + e.Reason + ": " + e.Err.Error()
	}
	return "auth: " + e.Reason
}

func (e *TokenError) Unwrap() error { return e.Err }

// ErrNoToken is the TokenError of a request without credentials.
var ErrNoToken = &TokenError{Reason: "no bearer token"}

// Verifier checks bearer tokens and turns them into principals.
type Verifier struct {
	cfg    VerifierConfig
	algs   []string
	policy *Policy
	logger *slog.Logger
	parser *jwt.Parser

	mu      sync.RWMutex
	keys    jwt.Keyfunc // nil until Start for a JWKS URL
	cancel  context.CancelFunc
	started bool
}

// NewVerifier checks the configuration and loads the static keys (secret,
// PEM file, JWKS file); a JWKS URL is fetched by Start.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	sources := 0
	for _, s := range []string{cfg.Secret, cfg.PublicKeyFile, cfg.JWKSFile, cfg.JWKSURL} {
		if s != "" {
			sources++
		}
	}
	switch {
	case sources == 0:
		return nil, errors.New("auth: JWT needs a key: set TASKER_JWT_SECRET, TASKER_JWT_PUBLIC_KEY_FILE, TASKER_JWT_JWKS_FILE or TASKER_JWT_JWKS_URL")
	case sources > 1:
		return nil, errors.New("auth: set only one of TASKER_JWT_SECRET, TASKER_JWT_PUBLIC_KEY_FILE, TASKER_JWT_JWKS_FILE and TASKER_JWT_JWKS_URL")
	case cfg.Issuer == "":
		return nil, errors.New("auth: JWT needs TASKER_JWT_ISSUER: tokens from any issuer would otherwise be accepted")
	case cfg.Audience == "":
		return nil, errors.New("auth: JWT needs TASKER_JWT_AUDIENCE: tokens minted for other services would otherwise be accepted")
	case cfg.Leeway < 0 || cfg.Leeway > MaxLeeway:
		return nil, fmt.Errorf("auth: leeway %s: want 0 to %s", cfg.Leeway, MaxLeeway)
	}
	v := &Verifier{
		cfg:    cfg,
		policy: cmp.Or(cfg.Policy, DefaultPolicy()),
		logger: cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "auth")),
	}
	v.cfg.RolesClaim = cmp.Or(cfg.RolesClaim, DefaultRolesClaim)
	v.cfg.JWKSRefresh = cmp.Or(cfg.JWKSRefresh, DefaultJWKSRefresh)
	if cfg.Leeway == 0 {
		v.cfg.Leeway = DefaultLeeway
	}
	switch {
	case cfg.Secret != "":
		if len(cfg.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("auth: TASKER_JWT_SECRET must be at least %d bytes", MinSecretBytes)
		}
		secret := []byte(cfg.Secret)
		v.algs = secretAlgorithms
		v.keys = func(*jwt.Token) (any, error) { return secret, nil }
	case cfg.PublicKeyFile != "":
		key, alg, err := loadPublicKey(cfg.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		v.algs = []string{alg}
		v.keys = func(*jwt.Token) (any, error) { return key, nil }
	case cfg.JWKSFile != "":
		raw, err := os.ReadFile(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS file: %w", err)
		}
		if !json.Valid(raw) {
			return nil, fmt.Errorf("auth: JWKS file %s is not JSON", cfg.JWKSFile)
		}
		k, err := keyfunc.NewJWKSetJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS file %s: %w", cfg.JWKSFile, err)
		}
		v.algs = publicKeyAlgorithms
		v.keys = k.Keyfunc
	case cfg.JWKSURL != "":
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("auth: TASKER_JWT_JWKS_URL %q is not an http(s) URL", cfg.JWKSURL)
		}
		v.algs = publicKeyAlgorithms
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.algs),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	return v, nil
}

// loadPublicKey reads a PEM public key (or certificate) and the one
// algorithm it may verify.
func loadPublicKey(path string) (any, string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("auth: public key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, "", fmt.Errorf("auth: public key file %s holds no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, "", fmt.Errorf("auth: public key file %s holds a %q block; want PUBLIC KEY or CERTIFICATE (never a private key)", path, block.Type)
	}
	if err != nil {
		return nil, "", fmt.Errorf("auth: public key file %s: %w", path, err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, "", fmt.Errorf("auth: public key file %s: RSA keys shorter than 2048 bits are refused", path)
		}
		return k, "RS256", nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", fmt.Errorf("auth: public key file %s: only P-256 (ES256) EC keys are accepted", path)
		}
		return k, "ES256", nil
	case ed25519.PublicKey:
		return k, "EdDSA", nil
	default:
		return nil, "", fmt.Errorf("auth: public key file %s: unsupported key type %T", path, key)
	}
}

// Start fetches a JWKS URL and keeps it fresh until Stop; without one it
// does nothing. It returns at once: a JWKS endpoint that is down at start
// is logged and retried, and tokens are refused until it answers.
func (v *Verifier) Start(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.started {
		return nil
	}
	v.started = true
	if v.cfg.JWKSURL == "" {
		return nil
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.cancel = cancel
	client := v.cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	noErr := true
	k, err := keyfunc.NewDefaultOverrideCtx(runCtx, []string{v.cfg.JWKSURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               10 * time.Second,
		NoErrorReturnFirstHTTPReq: &noErr,
		RefreshInterval:           v.cfg.JWKSRefresh,
		// A kid the set lacks may be a key just rotated in: fetch again,
		// but at most every 10 s, and never keep a request waiting for the
		// limiter (a forged kid must not slow the server down).
		RefreshUnknownKID: rate.NewLimiter(rate.Every(10*time.Second), 1),
		RateLimitWaitMax:  time.Millisecond,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				v.logger.WarnContext(ctx, "JWKS refresh failed", slog.String("url", u), slog.String("error", err.Error()))
			}
		},
	})
	if err != nil {
		cancel()
		return fmt.Errorf("auth: JWKS URL: %w", err)
	}
	v.keys = k.Keyfunc
	return nil
}

// Stop ends the JWKS refresh; safe twice and before Start.
func (v *Verifier) Stop(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cancel != nil {
		v.cancel()
		v.cancel = nil
	}
	return nil
}

// Algorithms lists the algorithms this verifier accepts.
func (v *Verifier) Algorithms() []string { return append([]string(nil), v.algs...) }

// Verify checks a raw token (without "Bearer ") and returns its principal,
// or a *TokenError.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	if raw == "" {
		return nil, ErrNoToken
	}
	v.mu.RLock()
	keys := v.keys
	v.mu.RUnlock()
	if keys == nil {
		return nil, &TokenError{Code: CodeInvalidToken, Reason: "the JWKS URL has not been fetched yet"}
	}
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		key, err := keys(t)
		if err != nil {
			return nil, err
		}
		if err := keyMatchesMethod(t.Method, key); err != nil {
			return nil, err
		}
		return key, nil
	})
	if err != nil {
		return nil, &TokenError{Code: CodeInvalidToken, Reason: "token refused", Err: err}
	}
	sub, err := claims.GetSubject()
	if err != nil || sub == "" {
		return nil, &TokenError{Code: CodeInvalidToken, Reason: "token has no sub claim"}
	}
	roles, err := rolesOf(claims, v.cfg.RolesClaim)
	if err != nil {
		return nil, &TokenError{Code: CodeInvalidToken, Reason: "roles claim", Err: err}
	}
	return NewPrincipal(sub, roles, v.policy), nil
}

// keyMatchesMethod refuses a key of the wrong kind for the token's
// algorithm. golang-jwt's methods check this too; saying it here keeps the
// algorithm-confusion defence in one visible place.
func keyMatchesMethod(m jwt.SigningMethod, key any) error {
	ok := false
	switch m.(type) {
	case *jwt.SigningMethodHMAC:
		_, ok = key.([]byte)
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		_, ok = key.(*rsa.PublicKey)
	case *jwt.SigningMethodECDSA:
		_, ok = key.(*ecdsa.PublicKey)
	case *jwt.SigningMethodEd25519:
		_, ok = key.(ed25519.PublicKey)
	}
	if !ok {
		return fmt.Errorf("algorithm %s does not match the key (%T)", m.Alg(), key)
	}
	return nil
}

// rolesOf reads the roles claim: a list of strings, or one string of
// space-separated roles; absent means no roles.
func rolesOf(claims jwt.MapClaims, path string) ([]string, error) {
	var cur any = map[string]any(claims)
	for part := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, nil
		}
		if cur, ok = obj[part]; !ok {
			return nil, nil
		}
	}
	switch v := cur.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.Fields(v), nil
	case []any:
		out := make([]string, 0, len(v))
		for _, r := range v {
			s, ok := r.(string)
			if !ok {
				return nil, fmt.Errorf("claim %s holds a %T, want strings", path, r)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("claim %s is a %T, want a list of strings", path, cur)
	}
}
