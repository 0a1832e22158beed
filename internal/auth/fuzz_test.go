package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/auth/authtest"
)

// fuzzVerifier is a started verifier for fuzzing: tests' newVerifier wants
// a *testing.T, a fuzz target has a *testing.F.
func fuzzVerifier(f *testing.F, cfg auth.VerifierConfig) *auth.Verifier {
	f.Helper()
	cfg.Issuer, cfg.Audience = authtest.Issuer, authtest.Audience
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		f.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = v.Stop(context.Background()) })
	return v
}

// checkVerdict is the property every fuzzed token must keep: refused with
// a *TokenError (what the API turns into a 401), or accepted with a
// subject to record as the actor.
func checkVerdict(t *testing.T, p *auth.Principal, err error) {
	t.Helper()
	if err != nil {
		var te *auth.TokenError
		if !errors.As(err, &te) || te.Reason == "" {
			t.Fatalf("refused without a *TokenError: %#v", err)
		}
		_ = te.Error()
		return
	}
	if p == nil || p.Subject == "" {
		t.Fatalf("accepted without a subject: %+v", p)
	}
}

// FuzzVerifyToken feeds arbitrary strings to verifiers of every key kind
// (HS256 secret, RS256/ES256/EdDSA through a JWKS): malformed tokens,
// forgeries (alg none, algorithm confusion, tampered payloads) and
// mutations of good tokens are refused with a *TokenError, never a panic.
func FuzzVerifyToken(f *testing.F) {
	rsa, ec, ed := authtest.NewRSA(f, "rsa"), authtest.NewEC(f, "ec"), authtest.NewEd25519(f, "ed")
	hs := fuzzVerifier(f, auth.VerifierConfig{Secret: secret})
	jwks := fuzzVerifier(f, auth.VerifierConfig{JWKSFile: writeFuzzFile(f, "jwks.json", authtest.JWKS(f, rsa, ec, ed))})
	good := authtest.Valid("ops@example.com", "admin")
	for _, tok := range []string{
		"", authtest.Malformed, "a.b.c", "....", "Bearer x",
		authtest.SignHS256(f, []byte(secret), good),
		authtest.SignHS256(f, []byte(secret), authtest.Claims{"sub": "x"}),
		authtest.SignHS256(f, []byte(secret), with(good, "roles", map[string]any{"deep": []any{1, nil}})),
		authtest.SignHS256(f, []byte(secret), with(good, "exp", "tomorrow")),
		authtest.AlgNone(f, good),
		rsa.Sign(f, good), ec.Sign(f, good), ed.Sign(f, good),
		rsa.HS256WithPublicKey(f, good),
		authtest.Tamper(rsa.Sign(f, good)),
	} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, v := range []*auth.Verifier{hs, jwks} {
			p, err := v.Verify(context.Background(), raw)
			checkVerdict(t, p, err)
		}
	})
}

// FuzzVerifyClaims signs arbitrary headers and payloads with the real
// secret, so the fuzzer gets past the signature to the claims: times of
// any type, audiences of any shape, roles claims nested anywhere
// (TASKER_JWT_ROLES_CLAIM walks dots into objects). Each is refused with
// a *TokenError or accepted with a subject.
func FuzzVerifyClaims(f *testing.F) {
	plain := fuzzVerifier(f, auth.VerifierConfig{Secret: secret})
	nested := fuzzVerifier(f, auth.VerifierConfig{Secret: secret, RolesClaim: "realm_access.roles"})
	for _, seed := range [][2]string{
		{`{"alg":"HS256","typ":"JWT"}`, `{"iss":"https://issuer.test","aud":"taskerd-test","sub":"a","roles":["admin"],"exp":4102444800}`},
		{`{"alg":"HS256"}`, `{"iss":"https://issuer.test","aud":["x","taskerd-test"],"sub":"a","realm_access":{"roles":"admin viewer"},"exp":4102444800}`},
		{`{"alg":"HS256"}`, `{"iss":"https://issuer.test","aud":"taskerd-test","sub":"a","realm_access":{"roles":[1,{}]},"exp":4102444800}`},
		{`{"alg":"HS256"}`, `{"iss":"https://issuer.test","aud":"taskerd-test","sub":7,"exp":1e309}`},
		{`{"alg":"HS256"}`, `{"iss":"https://issuer.test","aud":"taskerd-test","sub":"a","exp":4102444800,"nbf":"soon","iat":-1e300}`},
		{`{"alg":"none"}`, `{"sub":"a"}`},
		{`{"alg":"HS256","crit":["x"],"kid":{"a":1}}`, `null`},
		{`[]`, `[]`},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	b64 := base64.RawURLEncoding.EncodeToString
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		signing := b64(header) + "." + b64(payload)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(signing))
		raw := signing + "." + b64(mac.Sum(nil))
		for _, v := range []*auth.Verifier{plain, nested} {
			p, err := v.Verify(context.Background(), raw)
			checkVerdict(t, p, err)
		}
	})
}

func writeFuzzFile(f *testing.F, name string, data []byte) string {
	f.Helper()
	p := filepath.Join(f.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		f.Fatal(err)
	}
	return p
}
