package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/auth/authtest"
	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/migrate"
	"github.com/taskerd/taskerd/internal/testdb"
)

var binary string

// TestMain builds the real binary once: these tests drive taskerd as its
// users do, with arguments, environment variables and signals.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskerd-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "taskerd")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build taskerd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	testdb.Shutdown()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// taskerd runs the binary to completion with only the given TASKER_ variables.
func taskerd(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// cleanEnv drops the developer's TASKER_ settings so they cannot change a test.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TASKER_") {
			out = append(out, kv)
		}
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a long-running taskerd.
type process struct {
	cmd    *exec.Cmd
	base   string
	output *syncBuffer
	done   chan error
}

func start(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), append([]string{"TASKER_HTTP_ADDR=" + addr, "TASKER_LOG_FORMAT=text"}, env...)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, base: "http://" + addr, output: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("taskerd output:\n%s", out.String())
		}
	})
	return p
}

// waitFor polls url until it answers want, or fails the test at the deadline.
func (p *process) waitFor(t *testing.T, path string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("taskerd exited while waiting for %s: %v", path, err)
		default:
		}
		resp, err := http.Get(p.base + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s: want %d within %s, last %s", path, want, within, last)
}

// stop sends SIGTERM and returns the exit code, failing after within.
func (p *process) stop(t *testing.T, within time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("taskerd did not exit within %s of SIGTERM", within)
		return -1
	}
}

func getJSON(t *testing.T, url string) (int, string, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := taskerd(t, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "taskerd ") || !strings.Contains(r.stdout, "go1.") || !strings.Contains(r.stdout, "commit ") {
		t.Fatalf("version: %+v", r)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no command", nil, nil, "Usage"},
		{"unknown command", nil, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"bad setting from env", []string{"TASKER_HTTP_ADDR=8080", "TASKER_DATABASE_URL=postgres://x"}, []string{"serve"}, "TASKER_HTTP_ADDR (--http-addr)"},
		{"bad setting from flag", []string{"TASKER_DATABASE_URL=postgres://x"}, []string{"serve", "--shutdown-timeout", "soon"}, "TASKER_SHUTDOWN_TIMEOUT"},
		{"missing database url", nil, []string{"serve"}, "TASKER_DATABASE_URL (--database-url) is required"},
		{"unknown flag", nil, []string{"serve", "--bogus"}, "bogus"},
		{"serve without auth", []string{"TASKER_DATABASE_URL=postgres://x"}, []string{"serve"}, "--insecure-no-auth"},
		{"jwt without a key", []string{"TASKER_DATABASE_URL=postgres://x", "TASKER_AUTH_MODE=jwt"}, []string{"serve"}, "TASKER_JWT_SECRET"},
		{"jwt without an issuer", []string{"TASKER_DATABASE_URL=postgres://x", "TASKER_AUTH_MODE=jwt", "TASKER_JWT_SECRET=" + testSecret}, []string{"serve"}, "TASKER_JWT_ISSUER"},
		{"bad auth mode", []string{"TASKER_DATABASE_URL=postgres://x", "TASKER_AUTH_MODE=basic"}, []string{"serve"}, "TASKER_AUTH_MODE"},
		{"short secret, not echoed", []string{"TASKER_DATABASE_URL=postgres://x", "TASKER_JWT_SECRET=hunter2"}, []string{"serve"}, "[redacted]"},
		{"bad policy", []string{"TASKER_DATABASE_URL=postgres://x", "TASKER_AUTH_MODE=jwt", "TASKER_JWT_SECRET=" + testSecret,
			"TASKER_JWT_ISSUER=i", "TASKER_JWT_AUDIENCE=a", "TASKER_AUTH_POLICY=/nonexistent/policy.yaml"}, []string{"serve"}, "auth policy"},
		{"bad migrate action", []string{"TASKER_DATABASE_URL=postgres://x"}, []string{"migrate", "sideways"}, `unknown action "sideways"`},
		{"bad --to", []string{"TASKER_DATABASE_URL=postgres://x"}, []string{"migrate", "down", "--to", "-3"}, "--to"},
	} {
		r := taskerd(t, tc.env, tc.args...)
		if strings.Contains(r.stderr, "hunter2") {
			t.Errorf("%s: a secret setting was echoed: %q", tc.name, r.stderr)
		}
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.name, r.code, r.stderr, tc.want)
		}
		if tc.name != "no command" && tc.name != "unknown command" && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: want one line, got %q", tc.name, r.stderr)
		}
	}
}

func TestServeHelpListsEverySetting(t *testing.T) {
	t.Parallel()
	r := taskerd(t, nil, "serve", "--help")
	if r.code != 0 {
		t.Fatalf("serve --help: %+v", r)
	}
	for _, s := range config.Settings {
		for _, name := range config.Server {
			if name == s.Flag && (!strings.Contains(r.stdout, "--"+s.Flag) || !strings.Contains(r.stdout, s.Env)) {
				t.Errorf("serve --help lacks --%s / %s", s.Flag, s.Env)
			}
		}
	}
}

func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	env := []string{"TASKER_DATABASE_URL=" + testdb.NewEmpty(t)}
	latest := fmt.Sprint(migrate.LatestVersion())

	if r := taskerd(t, env, "migrate", "version"); r.code != 0 || strings.TrimSpace(r.stdout) != "0" {
		t.Fatalf("version on empty: %+v", r)
	}
	if r := taskerd(t, env, "migrate", "status"); r.code != 0 || !strings.Contains(r.stdout, "pending") || !strings.Contains(r.stdout, "00001_initial_schema.sql") {
		t.Fatalf("status on empty: %+v", r)
	}
	if r := taskerd(t, env, "migrate", "up"); r.code != 0 || !strings.Contains(r.stdout, "version "+latest) {
		t.Fatalf("up: %+v", r)
	}
	if r := taskerd(t, env, "migrate", "status"); r.code != 0 || strings.Contains(r.stdout, "pending") || !strings.Contains(r.stdout, "applied") {
		t.Fatalf("status after up: %+v", r)
	}
	if r := taskerd(t, env, "migrate", "down", "--to", "0"); r.code != 0 || strings.TrimSpace(taskerd(t, env, "migrate", "version").stdout) != "0" {
		t.Fatalf("down --to 0: %+v", r)
	}
	if r := taskerd(t, env, "migrate", "up"); r.code != 0 || strings.TrimSpace(taskerd(t, env, "migrate", "version").stdout) != latest {
		t.Fatalf("up again: %+v", r)
	}
	// An unreachable database is an error (exit 1), not a hang.
	bad := []string{"TASKER_DATABASE_URL=postgres://nobody@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"}
	if r := taskerd(t, bad, "migrate", "up"); r.code != 1 {
		t.Fatalf("up on unreachable database: %+v", r)
	}
}

func TestServe(t *testing.T) {
	t.Parallel()
	p := start(t, []string{"TASKER_DATABASE_URL=" + testdb.New(t)}, "serve", "--insecure-no-auth")
	p.waitFor(t, "/tasker/health/ready", 200, 30*time.Second)

	code, _, body := getJSON(t, p.base+"/tasker/health/live")
	if code != 200 || body["alive"] != true {
		t.Errorf("live: %d %v", code, body)
	}
	var ct string
	code, ct, body = getJSON(t, p.base+"/tasker/no/such/route")
	if code != 404 || ct != "application/problem+json" || body["status"] != float64(404) {
		t.Errorf("unknown route: %d %s %v", code, ct, body)
	}
	if got := p.stop(t, 30*time.Second); got != 0 {
		t.Fatalf("exit code after SIGTERM: %d", got)
	}
}

// testSecret is an HS256 key long enough for TASKER_JWT_SECRET.
const testSecret = "cmd-test-secret-0123456789abcdef0123456789"

// serve with TASKER_AUTH_MODE=jwt: probes stay open, the API wants a
// token, and a token's subject is the actor of what it does.
func TestServeWithJWT(t *testing.T) {
	t.Parallel()
	p := start(t, []string{"TASKER_DATABASE_URL=" + testdb.New(t), "TASKER_AUTH_MODE=jwt", "TASKER_JWT_SECRET=" + testSecret,
		"TASKER_JWT_ISSUER=" + authtest.Issuer, "TASKER_JWT_AUDIENCE=" + authtest.Audience}, "serve")
	p.waitFor(t, "/tasker/health/ready", 200, 30*time.Second)
	if out := p.output.String(); strings.Contains(out, "AUTHENTICATION IS OFF") {
		t.Errorf("jwt mode warned that authentication is off:\n%s", out)
	}
	call := func(token string) (int, http.Header) {
		req, _ := http.NewRequest("GET", p.base+"/tasker/tasks", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if code, h := call(""); code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %q", code, h.Get("WWW-Authenticate"))
	}
	if code, h := call(authtest.Malformed); code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("malformed token: %d %q", code, h.Get("WWW-Authenticate"))
	}
	if code, _ := call(authtest.SignHS256(t, []byte(testSecret), authtest.Valid("ops@example.com", "viewer"))); code != 200 {
		t.Errorf("viewer token: %d", code)
	}
	if got := p.stop(t, 30*time.Second); got != 0 {
		t.Fatalf("exit code after SIGTERM: %d", got)
	}
}

// An unreachable database keeps the server up: live 200, ready 503 with the
// reason, and a clean exit on SIGTERM.
func TestServeWithUnreachableDatabase(t *testing.T) {
	t.Parallel()
	p := start(t, []string{"TASKER_DATABASE_URL=postgres://nobody@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", "TASKER_MIGRATE=true", "TASKER_INSECURE_NO_AUTH=true"}, "serve")
	p.waitFor(t, "/tasker/health/live", 200, 30*time.Second)
	code, _, body := getJSON(t, p.base+"/tasker/health/ready")
	if code != 503 || body["ready"] != false || !strings.Contains(fmt.Sprint(body["message"]), "database") {
		t.Errorf("ready: %d %v", code, body)
	}
	if got := p.stop(t, 30*time.Second); got != 0 {
		t.Fatalf("exit code after SIGTERM: %d", got)
	}
}

// serve --migrate on an empty database becomes ready once it has migrated.
func TestServeMigrates(t *testing.T) {
	t.Parallel()
	p := start(t, []string{"TASKER_DATABASE_URL=" + testdb.NewEmpty(t)}, "serve", "--migrate", "--insecure-no-auth")
	p.waitFor(t, "/tasker/health/ready", 200, 60*time.Second)
	p.stop(t, 30*time.Second)
}

// taskerd dev boots its own PostgreSQL, serves, and leaves no postgres
// behind on SIGTERM; a second run reuses the cluster and survives a stale
// postmaster.pid.
func TestDev(t *testing.T) {
	t.Parallel()
	root, err := os.MkdirTemp("", "taskerd-dev-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil { // the postgres user must enter it when we are root
		t.Fatal(err)
	}
	pgDir := filepath.Join(root, "pg")
	env := []string{"TASKER_PG_DIR=" + pgDir}

	p := start(t, env, "dev")
	p.waitFor(t, "/tasker/health/ready", 200, 2*time.Minute)
	if out := p.output.String(); !strings.Contains(out, "/tasker/api-docs/") || !strings.Contains(out, "/tasker/health/ready") {
		t.Errorf("dev should print the URLs; got:\n%s", out)
	}
	if out := p.output.String(); !strings.Contains(out, "AUTHENTICATION IS OFF") {
		t.Errorf("dev without TASKER_AUTH_MODE should warn loudly that authentication is off; got:\n%s", out)
	}
	if got := p.stop(t, time.Minute); got != 0 {
		t.Fatalf("dev exit code: %d", got)
	}
	if pids := postgresUsing(pgDir); len(pids) > 0 {
		t.Fatalf("postgres processes left behind: %v", pids)
	}
	port1, _ := os.ReadFile(filepath.Join(pgDir, "port"))

	// A crash leaves postmaster.pid behind; the next run must cope.
	if err := os.WriteFile(filepath.Join(pgDir, "data", "postmaster.pid"), []byte("999999\n"+filepath.Join(pgDir, "data")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p = start(t, env, "dev")
	p.waitFor(t, "/tasker/health/ready", 200, 2*time.Minute)
	port2, _ := os.ReadFile(filepath.Join(pgDir, "port"))
	if len(port1) == 0 || string(port1) != string(port2) {
		t.Errorf("second run should reuse the cluster's port: %q then %q", port1, port2)
	}
	if got := p.stop(t, time.Minute); got != 0 {
		t.Fatalf("second dev exit code: %d", got)
	}
	if pids := postgresUsing(pgDir); len(pids) > 0 {
		t.Fatalf("postgres processes left behind after second run: %v", pids)
	}
}

// postgresUsing lists live (non-zombie) postgres processes whose command line names dir.
func postgresUsing(dir string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), dir) || !strings.Contains(string(cmdline), "postgres") {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			continue
		}
		pids = append(pids, e.Name())
	}
	return pids
}
