// Package e2e runs the examples as their READMEs do: the real taskerd
// binary on a fresh database, the mock services as a separate program, and
// requests over HTTP. Each example's test calls Main from its TestMain and
// Start from each test.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/testdb"
)

// MockAddr is where the examples' templates and READMEs expect the mock
// services; the tests replace it with the address the mocks really got.
const MockAddr = "http://localhost:8090"

// bin is the folder of the built binaries.
var bin string

// Main builds taskerd, the mock services and the given extra programs
// (name → package path), runs the tests, and stops the test database.
func Main(m *testing.M, extra map[string]string) {
	dir, err := os.MkdirTemp("", "taskerd-example-")
	if err != nil {
		panic(err)
	}
	bin = dir
	pkgs := map[string]string{
		"taskerd":      "github.com/taskerd/taskerd/cmd/taskerd",
		"mockservices": "github.com/taskerd/taskerd/examples/mockservices",
	}
	for name, pkg := range extra {
		pkgs[name] = pkg
	}
	for name, pkg := range pkgs {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	testdb.Shutdown()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Bin is the path of a built program.
func Bin(name string) string { return filepath.Join(bin, name) }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Process is a started program, killed when the test ends if still running;
// its output is logged when the test failed.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// Run starts a program with the environment plus env.
func Run(t *testing.T, name string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(cleanEnv(), env...)
	p := &Process{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// Output is what the program wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Stop sends SIGTERM and wants a clean exit within 20 s.
func (p *Process) Stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("%s exited with %v", p.name, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20s of SIGTERM", p.name)
	}
}

// cleanEnv drops the developer's TASKER_ settings so they cannot change a test.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TASKER_") || strings.HasPrefix(kv, testdb.EnvURL+"=") {
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

// Env is a running example: taskerd on a fresh database and the mocks.
type Env struct {
	T       *testing.T
	Taskerd *Process
	Mocks   *Process
	// Base is taskerd's URL, MocksURL the mock services'.
	Base, MocksURL string
	// Header is sent with every call to taskerd (see With and As).
	Header http.Header
}

// With is the env whose calls to taskerd also carry header: an
// X-Correlation-ID, a traceparent.
func (e *Env) With(header http.Header) *Env {
	c := *e
	c.Header = e.Header.Clone()
	if c.Header == nil {
		c.Header = http.Header{}
	}
	for k, vs := range header {
		c.Header[k] = vs
	}
	return &c
}

// As is the env whose calls to taskerd carry a bearer token.
func (e *Env) As(token string) *Env {
	return e.With(http.Header{"Authorization": {"Bearer " + token}})
}

// Start runs the mock services and `taskerd serve --insecure-no-auth` on a
// fresh database (with the extra TASKER_ settings in env), and waits until
// taskerd is ready.
func Start(t *testing.T, env ...string) *Env {
	t.Helper()
	e := &Env{T: t}
	e.Mocks = Run(t, "mockservices", nil, Bin("mockservices"), "-addr", "127.0.0.1:0")
	e.MocksURL = e.waitListening()
	addr := freeAddr(t)
	e.Base = "http://" + addr
	e.Taskerd = Run(t, "taskerd", append([]string{
		"TASKER_DATABASE_URL=" + testdb.New(t), "TASKER_HTTP_ADDR=" + addr, "TASKER_LOG_FORMAT=text",
		// Examples run on loopback; docs/auth.md shows the API with tokens.
		"TASKER_INSECURE_NO_AUTH=true",
	}, env...), Bin("taskerd"), "serve")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := e.Call("GET", "/tasker/health/ready", ""); code == http.StatusOK {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatal("taskerd did not become ready within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitListening reads the mocks' address from their first line.
func (e *Env) waitListening() string {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(e.Mocks.Output()))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "mockservices listening on "); ok {
				return strings.TrimSpace(rest)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.T.Fatal("mockservices did not print its address")
	return ""
}

// Call sends a request to taskerd (a path under it) or to a full URL; a
// body starting with '{' is JSON, anything else YAML. It returns the
// status and the decoded JSON answer.
func (e *Env) Call(method, target, body string) (int, any) {
	e.T.Helper()
	url := target
	if strings.HasPrefix(target, "/") {
		url = e.Base + target
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		e.T.Fatal(err)
	}
	if strings.HasPrefix(target, "/") {
		for k, vs := range e.Header {
			req.Header[k] = vs
		}
	}
	switch {
	case strings.HasPrefix(body, "{"):
		req.Header.Set("Content-Type", "application/json")
	case body != "":
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// Object is Call for answers that are JSON objects.
func (e *Env) Object(method, target, body string) (int, map[string]any) {
	e.T.Helper()
	code, out := e.Call(method, target, body)
	m, _ := out.(map[string]any)
	return code, m
}

// RegisterFile registers a template file, pointed at the mocks.
func (e *Env) RegisterFile(path string) {
	e.T.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		e.T.Fatal(err)
	}
	if code, body := e.Object("POST", "/tasker/templates", strings.ReplaceAll(string(doc), MockAddr, e.MocksURL)); code != http.StatusCreated {
		e.T.Fatalf("register %s: %d %v", path, code, body)
	}
}

// CreateTask starts a task and returns its id.
func (e *Env) CreateTask(namespace, name string, context any) string {
	e.T.Helper()
	body, _ := json.Marshal(map[string]any{"namespace": namespace, "name": name, "context": context})
	code, out := e.Object("POST", "/tasker/tasks", string(body))
	if code != http.StatusCreated {
		e.T.Fatalf("create %s.%s: %d %v", namespace, name, code, out)
	}
	return out["task_id"].(string)
}

// WaitTask polls the task until its status is want, failing at another
// final status or after within; it returns the task with its steps.
func (e *Env) WaitTask(id, want string, within time.Duration) map[string]any {
	e.T.Helper()
	deadline := time.Now().Add(within)
	for {
		code, task := e.Object("GET", "/tasker/tasks/"+id+"?include=steps,transitions", "")
		status, _ := task["status"].(string)
		if code == http.StatusOK && status == want {
			return task
		}
		final := status == "complete" || status == "error" || status == "cancelled"
		if final || time.Now().After(deadline) {
			e.T.Fatalf("task %s: %d %s, want %s: %v", id, code, status, want, task)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Step is a step of a task fetched with include=steps, by name.
func Step(task map[string]any, name string) map[string]any {
	steps, _ := task["workflow_steps"].([]any)
	for _, s := range steps {
		if s, _ := s.(map[string]any); s["name"] == name {
			return s
		}
	}
	return nil
}

// Call is one request the mocks received.
type Call struct {
	Endpoint       string    `json:"endpoint"`
	Path           string    `json:"path"`
	IdempotencyKey string    `json:"idempotency_key"`
	CorrelationID  string    `json:"correlation_id"`
	Status         int       `json:"status"`
	At             time.Time `json:"at"`
}

// Calls lists the requests an endpoint of the mocks received ("" for all).
func (e *Env) Calls(endpoint string) []Call {
	e.T.Helper()
	resp, err := http.Get(e.MocksURL + "/admin/calls?endpoint=" + endpoint)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	var calls []Call
	if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil {
		e.T.Fatal(err)
	}
	return calls
}

// SetMode switches an endpoint of the mocks to a failure mode.
func (e *Env) SetMode(endpoint, modeJSON string) {
	e.T.Helper()
	if code, out := e.Call("PUT", e.MocksURL+"/admin/modes/"+endpoint, modeJSON); code != http.StatusOK {
		e.T.Fatalf("set mode of %s: %d %v", endpoint, code, out)
	}
}
