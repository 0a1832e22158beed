// Package authtest mints keys and tokens for tests: good ones, and the
// forgeries a verifier must refuse.
package authtest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer and Audience are what the tests configure and sign.
const (
	Issuer   = "https://issuer.test"
	Audience = "taskerd-test"
)

// Key is a signing key with its public half.
type Key struct {
	// KID names the key in a JWKS.
	KID     string
	private any
	public  any
	method  jwt.SigningMethod
}

// NewRSA makes a 2048-bit RS256 key.
func NewRSA(t testing.TB, kid string) *Key {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{KID: kid, private: k, public: &k.PublicKey, method: jwt.SigningMethodRS256}
}

// NewEC makes a P-256 ES256 key.
func NewEC(t testing.TB, kid string) *Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{KID: kid, private: k, public: &k.PublicKey, method: jwt.SigningMethodES256}
}

// NewEd25519 makes an EdDSA key.
func NewEd25519(t testing.TB, kid string) *Key {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{KID: kid, private: priv, public: pub, method: jwt.SigningMethodEdDSA}
}

// PublicPEM is the key's public half in PEM.
func (k *Key) PublicPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.public)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// WritePublicPEM writes the public PEM into a temporary file and returns its path.
func (k *Key) WritePublicPEM(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), k.KID+".pem")
	if err := os.WriteFile(path, k.PublicPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Claims are a token's claims; Valid fills the usual ones.
type Claims = jwt.MapClaims

// Valid returns claims accepted by a verifier configured with Issuer and
// Audience: subject sub, roles, expiring in an hour.
func Valid(sub string, roles ...string) Claims {
	now := time.Now()
	return Claims{
		"iss": Issuer, "aud": Audience, "sub": sub, "roles": roles,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// Sign signs claims with k (with its kid in the header).
func (k *Key) Sign(t testing.TB, c Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.method, c)
	tok.Header["kid"] = k.KID
	s, err := tok.SignedString(k.private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// SignHS256 signs claims with a shared secret.
func SignHS256(t testing.TB, secret []byte, c Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// AlgNone is an unsigned token (alg "none").
func AlgNone(t testing.TB, c Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// HS256WithPublicKey is the algorithm-confusion forgery: an HS256 token
// whose HMAC key is the server's public key in PEM, which a naive verifier
// would use as the secret.
func (k *Key) HS256WithPublicKey(t testing.TB, c Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["kid"] = k.KID
	s, err := tok.SignedString(k.PublicPEM(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// JWKS is a JSON Web Key Set of the keys' public halves.
func JWKS(t testing.TB, keys ...*Key) []byte {
	t.Helper()
	type jwk struct {
		Kty string `json:"kty"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
		N   string `json:"n,omitempty"`
		E   string `json:"e,omitempty"`
		Crv string `json:"crv,omitempty"`
		X   string `json:"x,omitempty"`
		Y   string `json:"y,omitempty"`
	}
	b64 := base64.RawURLEncoding.EncodeToString
	var set struct {
		Keys []jwk `json:"keys"`
	}
	for _, k := range keys {
		j := jwk{Kid: k.KID, Alg: k.method.Alg(), Use: "sig"}
		switch p := k.public.(type) {
		case *rsa.PublicKey:
			j.Kty, j.N, j.E = "RSA", b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
		case *ecdsa.PublicKey:
			raw, err := p.Bytes() // 0x04 || X || Y
			if err != nil {
				t.Fatal(err)
			}
			j.Kty, j.Crv = "EC", "P-256"
			j.X, j.Y = b64(raw[1:33]), b64(raw[33:65])
		case ed25519.PublicKey:
			j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(p)
		}
		set.Keys = append(set.Keys, j)
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Malformed is not a JWT at all.
const Malformed = "not.a-jwt"

// Tamper flips the payload of a signed token so its signature no longer fits.
func Tamper(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return token
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), `"sub":"`, `"sub":"x`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}
