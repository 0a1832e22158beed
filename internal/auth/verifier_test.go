package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/auth/authtest"
)

const secret = "0123456789abcdef0123456789abcdef-test-secret"

func newVerifier(t *testing.T, cfg auth.VerifierConfig) *auth.Verifier {
	t.Helper()
	cfg.Issuer = authtest.Issuer
	cfg.Audience = authtest.Audience
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Stop(context.Background()) })
	return v
}

func with(c authtest.Claims, k string, v any) authtest.Claims {
	out := authtest.Claims{}
	for key, val := range c {
		out[key] = val
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

// Every way a token can be wrong, for each kind of key; only the good
// token passes.
func TestVerifierAttacks(t *testing.T) {
	t.Parallel()
	rsaKey := authtest.NewRSA(t, "rsa-1")
	otherRSA := authtest.NewRSA(t, "rsa-1") // same kid, different key
	ecKey := authtest.NewEC(t, "ec-1")
	edKey := authtest.NewEd25519(t, "ed-1")
	hour := time.Hour
	good := authtest.Valid("alice", "admin")
	expired := with(with(good, "exp", time.Now().Add(-hour).Unix()), "iat", time.Now().Add(-2*hour).Unix())
	justExpired := with(good, "exp", time.Now().Add(-5*time.Second).Unix()) // within the leeway

	type tc struct {
		name  string
		token string
		ok    bool
	}
	for _, kind := range []struct {
		name   string
		cfg    auth.VerifierConfig
		sign   func(authtest.Claims) string
		extras []tc
	}{
		{
			name: "HS256 secret",
			cfg:  auth.VerifierConfig{Secret: secret},
			sign: func(c authtest.Claims) string { return authtest.SignHS256(t, []byte(secret), c) },
			extras: []tc{
				{"other secret", authtest.SignHS256(t, []byte(strings.Repeat("x", 40)), good), false},
				{"RS256 where HS256 is configured", rsaKey.Sign(t, good), false},
			},
		},
		{
			name: "RS256 PEM",
			cfg:  auth.VerifierConfig{PublicKeyFile: rsaKey.WritePublicPEM(t)},
			sign: func(c authtest.Claims) string { return rsaKey.Sign(t, c) },
			extras: []tc{
				{"HS256 signed with the RSA public key", rsaKey.HS256WithPublicKey(t, good), false},
				{"HS256 with a secret", authtest.SignHS256(t, []byte(secret), good), false},
				{"another RSA key", otherRSA.Sign(t, good), false},
				{"ES256", ecKey.Sign(t, good), false},
			},
		},
		{
			name: "ES256 PEM",
			cfg:  auth.VerifierConfig{PublicKeyFile: ecKey.WritePublicPEM(t)},
			sign: func(c authtest.Claims) string { return ecKey.Sign(t, c) },
			extras: []tc{
				{"HS256 signed with the EC public key", ecKey.HS256WithPublicKey(t, good), false},
				{"RS256", rsaKey.Sign(t, good), false},
			},
		},
		{
			name: "EdDSA JWKS file",
			cfg:  auth.VerifierConfig{JWKSFile: writeFile(t, "jwks.json", authtest.JWKS(t, edKey, rsaKey))},
			sign: func(c authtest.Claims) string { return edKey.Sign(t, c) },
			extras: []tc{
				{"RS256 from the same set", rsaKey.Sign(t, good), true},
				{"HS256 signed with a JWKS public key", rsaKey.HS256WithPublicKey(t, good), false},
				{"a key not in the set", otherRSA.Sign(t, good), false},
			},
		},
	} {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, kind.cfg)
			cases := append([]tc{
				{"good", kind.sign(good), true},
				{"expired within the leeway", kind.sign(justExpired), true},
				{"empty", "", false},
				{"malformed", authtest.Malformed, false},
				{"tampered payload", authtest.Tamper(kind.sign(good)), false},
				{"alg none", authtest.AlgNone(t, good), false},
				{"expired", kind.sign(expired), false},
				{"no exp", kind.sign(with(good, "exp", nil)), false},
				{"not yet valid", kind.sign(with(good, "nbf", time.Now().Add(hour).Unix())), false},
				{"issued in the future", kind.sign(with(good, "iat", time.Now().Add(hour).Unix())), false},
				{"wrong issuer", kind.sign(with(good, "iss", "https://evil.test")), false},
				{"no issuer", kind.sign(with(good, "iss", nil)), false},
				{"wrong audience", kind.sign(with(good, "aud", "someone-else")), false},
				{"audience list without ours", kind.sign(with(good, "aud", []string{"a", "b"})), false},
				{"audience list with ours", kind.sign(with(good, "aud", []string{"a", authtest.Audience})), true},
				{"no subject", kind.sign(with(good, "sub", nil)), false},
				{"roles not strings", kind.sign(with(good, "roles", []any{1, 2})), false},
			}, kind.extras...)
			for _, c := range cases {
				p, err := v.Verify(context.Background(), c.token)
				if c.ok {
					if err != nil || p.Subject != "alice" {
						t.Errorf("%s: refused: %v", c.name, err)
					}
					continue
				}
				var te *auth.TokenError
				if err == nil || !errors.As(err, &te) {
					t.Errorf("%s: accepted (principal %+v), want a TokenError", c.name, p)
					continue
				}
				if c.token == "" && te.Code != "" {
					t.Errorf("%s: code %q, want none for a missing token (RFC 6750 §3.1)", c.name, te.Code)
				}
				if c.token != "" && te.Code != auth.CodeInvalidToken {
					t.Errorf("%s: code %q, want invalid_token", c.name, te.Code)
				}
			}
		})
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifierRoles(t *testing.T) {
	t.Parallel()
	policy, err := auth.ParsePolicy([]byte("roles: {ops: ['payments:tasker.task:*']}"))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(c authtest.Claims) string { return authtest.SignHS256(t, []byte(secret), c) }
	for _, tc := range []struct {
		name  string
		claim string
		token authtest.Claims
		roles []string
	}{
		{"list", "", authtest.Valid("a", "ops", "viewer"), []string{"ops", "viewer"}},
		{"space-separated string", "", with(authtest.Valid("a"), "roles", "ops viewer"), []string{"ops", "viewer"}},
		{"absent", "", with(authtest.Valid("a"), "roles", nil), nil},
		{"nested claim", "realm_access.roles", with(authtest.Valid("a"), "realm_access", map[string]any{"roles": []string{"ops"}}), []string{"ops"}},
		{"custom claim", "groups", with(authtest.Valid("a"), "groups", []string{"ops"}), []string{"ops"}},
	} {
		v := newVerifier(t, auth.VerifierConfig{Secret: secret, RolesClaim: tc.claim, Policy: policy})
		p, err := v.Verify(context.Background(), sign(tc.token))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !slices.Equal(p.Roles, tc.roles) {
			t.Errorf("%s: roles %v, want %v", tc.name, p.Roles, tc.roles)
		}
		if want := slices.Contains(tc.roles, "ops"); p.Can(auth.TaskCancel, "payments") != want {
			t.Errorf("%s: can cancel in payments = %v, want %v", tc.name, !want, want)
		}
	}
}

func TestVerifierConfigErrors(t *testing.T) {
	t.Parallel()
	rsaKey := authtest.NewRSA(t, "k")
	privPEM := writeFile(t, "private.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	for _, tc := range []struct {
		name string
		cfg  auth.VerifierConfig
		want string
	}{
		{"no key", auth.VerifierConfig{Issuer: "i", Audience: "a"}, "needs a key"},
		{"two keys", auth.VerifierConfig{Issuer: "i", Audience: "a", Secret: secret, PublicKeyFile: rsaKey.WritePublicPEM(t)}, "only one"},
		{"no issuer", auth.VerifierConfig{Audience: "a", Secret: secret}, "TASKER_JWT_ISSUER"},
		{"no audience", auth.VerifierConfig{Issuer: "i", Secret: secret}, "TASKER_JWT_AUDIENCE"},
		{"short secret", auth.VerifierConfig{Issuer: "i", Audience: "a", Secret: "short"}, "at least 32 bytes"},
		{"private key file", auth.VerifierConfig{Issuer: "i", Audience: "a", PublicKeyFile: privPEM}, "never a private key"},
		{"missing file", auth.VerifierConfig{Issuer: "i", Audience: "a", PublicKeyFile: "/nonexistent.pem"}, "public key"},
		{"bad JWKS URL", auth.VerifierConfig{Issuer: "i", Audience: "a", JWKSURL: "ftp://x"}, "http(s) URL"},
		{"huge leeway", auth.VerifierConfig{Issuer: "i", Audience: "a", Secret: secret, Leeway: time.Hour}, "leeway"},
	} {
		if _, err := auth.NewVerifier(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// jwksServer serves a key set that the test replaces.
type jwksServer struct {
	mu   sync.Mutex
	body []byte
	hits int
}

func (s *jwksServer) set(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = b
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits++
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.body)
}

// A key rotated into the JWKS is accepted after a refresh; a key removed
// from it is refused after the next one.
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := authtest.NewRSA(t, "old"), authtest.NewEC(t, "new")
	jwks := &jwksServer{}
	jwks.set(authtest.JWKS(t, oldKey))
	srv := httptest.NewServer(jwks)
	t.Cleanup(srv.Close)
	v := newVerifier(t, auth.VerifierConfig{JWKSURL: srv.URL, JWKSRefresh: 50 * time.Millisecond})
	ctx := context.Background()
	claims := authtest.Valid("svc", "admin")

	if _, err := v.Verify(ctx, oldKey.Sign(t, claims)); err != nil {
		t.Fatalf("the published key: %v", err)
	}
	if _, err := v.Verify(ctx, oldKey.HS256WithPublicKey(t, claims)); err == nil {
		t.Fatal("HS256 signed with a JWKS public key was accepted")
	}
	if _, err := v.Verify(ctx, newKey.Sign(t, claims)); err == nil {
		t.Fatal("a key not yet published was accepted")
	}
	jwks.set(authtest.JWKS(t, oldKey, newKey))
	eventually(t, "the new key is accepted", func() bool {
		_, err := v.Verify(ctx, newKey.Sign(t, claims))
		return err == nil
	})
	jwks.set(authtest.JWKS(t, newKey))
	eventually(t, "the removed key is refused", func() bool {
		_, err := v.Verify(ctx, oldKey.Sign(t, claims))
		return err != nil
	})
	if _, err := v.Verify(ctx, newKey.Sign(t, claims)); err != nil {
		t.Fatalf("the remaining key: %v", err)
	}
}

// A JWKS endpoint that is down at start does not stop the server; tokens
// are refused until it answers.
func TestJWKSUnreachableAtStart(t *testing.T) {
	t.Parallel()
	key := authtest.NewRSA(t, "k")
	jwks := &jwksServer{}
	srv := httptest.NewServer(jwks) // serves an empty body: not a key set
	t.Cleanup(srv.Close)
	v := newVerifier(t, auth.VerifierConfig{JWKSURL: srv.URL, JWKSRefresh: 50 * time.Millisecond})
	if _, err := v.Verify(context.Background(), key.Sign(t, authtest.Valid("svc"))); err == nil {
		t.Fatal("accepted a token before the key set was fetched")
	}
	jwks.set(authtest.JWKS(t, key))
	eventually(t, "the key is accepted once the JWKS answers", func() bool {
		_, err := v.Verify(context.Background(), key.Sign(t, authtest.Valid("svc")))
		return err == nil
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
