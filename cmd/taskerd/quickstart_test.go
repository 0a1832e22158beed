package main_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/testdb"
)

// quickstartBlocks returns the sh code blocks of the README's quickstart
// section, in order.
func quickstartBlocks(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Quickstart")
	if !ok {
		t.Fatal("README.md has no ## Quickstart section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// TestQuickstart runs the README's quickstart as written, so it cannot rot:
// the first two blocks start taskerd and the mock services (here `serve` on
// a fresh test database stands for `make dev`, which boots the same server
// on a private cluster), and the third, the one a new user types, runs in
// bash with only the two addresses changed.
func TestQuickstart(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed; the quickstart's commands cannot run", tool)
		}
	}
	blocks := quickstartBlocks(t)
	if len(blocks) != 3 || !strings.HasPrefix(blocks[0], "make dev") || !strings.HasPrefix(blocks[1], "go run ./examples/mockservices") {
		t.Fatalf("the quickstart's blocks changed shape (want make dev; go run ./examples/mockservices; the commands), got %q", blocks)
	}

	p := start(t, []string{"TASKER_DATABASE_URL=" + testdb.New(t)}, "serve", "--insecure-no-auth")
	dir := t.TempDir()
	mocks := filepath.Join(dir, "mockservices")
	if out, err := exec.Command("go", "build", "-o", mocks, "../../examples/mockservices").CombinedOutput(); err != nil {
		t.Fatalf("build the mock services: %v\n%s", err, out)
	}
	mockURL := startMocks(t, mocks)
	p.waitFor(t, "/tasker/health/ready", 200, 30*time.Second)

	script := strings.NewReplacer("localhost:8080", strings.TrimPrefix(p.base, "http://"),
		"http://localhost:8090", mockURL).Replace(blocks[2])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the quickstart's commands failed: %v\n%s", err, out)
	}
	text := string(out)
	t.Logf("the quickstart's output:\n%s", out)
	for _, want := range []string{
		`"created"`,        // the template registered
		"\n\"complete\"\n", // the task completed
		`{"name":"charge","status":"complete","attempts":3,`, // the http step retried twice
		`"payment_id":"pay_`, // and kept the gateway's answer
		`{"name":"confirm","status":"complete","attempts":1,`,
		`flowchart TD`, // the diagram
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the quickstart's output lacks %s", want)
		}
	}
	if _, err := os.Stat(filepath.Join("..", "..", "examples", "mockservices", "main.go")); err != nil {
		t.Errorf("the quickstart runs ./examples/mockservices: %v", err)
	}
}

// startMocks runs the mock services on a free port and returns their URL.
func startMocks(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "mockservices listening on ")
	if err != nil || !ok {
		t.Fatalf("mock services: %q, %v", line, err)
	}
	return url
}
