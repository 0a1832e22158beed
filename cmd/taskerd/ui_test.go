package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taskerd/taskerd/internal/testdb"
)

// findChromium returns a Chromium or Chrome binary: TASKER_CHROMIUM, or
// the first of the usual names on PATH.
func findChromium() string {
	if p := os.Getenv("TASKER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestSwaggerUI opens the Swagger UI of the real binary in headless
// Chromium, checks that every operation of the spec is on the page, runs
// GET /tasks through "Try it out" against the serving host, and saves
// screenshots (kept under .test-output/ by `make e2e-ui`).
func TestSwaggerUI(t *testing.T) {
	t.Parallel()
	browser := findChromium()
	if browser == "" {
		t.Skip("Chromium not found: install Debian's chromium (`make test` does when run as root) or set TASKER_CHROMIUM")
	}
	p := start(t, []string{"TASKER_DATABASE_URL=" + testdb.New(t), "TASKER_INSECURE_NO_AUTH=true"}, "serve")
	p.waitFor(t, "/tasker/health/ready", 200, 30*time.Second)
	resp, err := http.Post(p.base+"/tasker/templates", "application/yaml", strings.NewReader(
		"namespace_name: shop\nname: checkout\nversion: 1.0.0\nstep_templates:\n  - {name: validate, handler: noop}\n"))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = http.Post(p.base+"/tasker/tasks", "application/json", strings.NewReader(`{"namespace":"shop","name":"checkout"}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v %v", err, resp)
	}
	resp.Body.Close()

	// The operations the spec declares, as Swagger UI shows them: "GET /tasks".
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	resp, err = http.Get(p.base + "/tasker/api-docs/doc.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var want []string
	for path, ops := range doc.Paths {
		for method := range ops {
			want = append(want, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(want)

	bctx := newBrowser(t, browser)

	// Open the page: the redirect from /api-docs to /api-docs/ is part of the test.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(p.base+"/tasker/api-docs"),
		chromedp.WaitVisible(chromedp.CSS(".opblock")),
	); err != nil {
		t.Fatalf("open the Swagger UI: %v", err)
	}
	location := run(t, bctx, chromedp.Location())
	title := run(t, bctx, chromedp.Text(chromedp.CSS(".info .title")))
	shown := run(t, bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('.opblock')).map(b =>
		b.querySelector('.opblock-summary-method').textContent.trim() + ' ' +
		b.querySelector('.opblock-summary-path').getAttribute('data-path'))`))
	save(t, "swagger-ui.png", run(t, bctx, chromedp.CaptureScreenshot()))
	save(t, "swagger-ui-full-page.png", run(t, bctx, chromedp.FullScreenshot(100)))
	if location != p.base+"/tasker/api-docs/" || !strings.Contains(title, "taskerd API") {
		t.Errorf("page %s titled %q", location, title)
	}
	slices.Sort(shown)
	if !slices.Equal(shown, want) || len(shown) < 20 {
		t.Errorf("the UI shows %d operations:\n%v\nthe spec has %d:\n%v", len(shown), shown, len(want), want)
	}

	// Try it out: GET /tasks, executed by the page against this server.
	op := `//div[contains(@class,"opblock-get")][.//span[@data-path="/tasks"]]`
	response := op + `//table[contains(@class,"live-responses-table")]`
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.Search(op+`//button[contains(@class,"opblock-summary-control")]`)),
		chromedp.WaitVisible(chromedp.Search(op+`//button[contains(@class,"try-out__btn")]`)),
		chromedp.Click(chromedp.Search(op+`//button[contains(@class,"try-out__btn")]`)),
		chromedp.WaitVisible(chromedp.Search(op+`//button[contains(@class,"execute")]`)),
		chromedp.Click(chromedp.Search(op+`//button[contains(@class,"execute")]`)),
		chromedp.WaitVisible(chromedp.Search(response+`//tbody//td[contains(@class,"response-col_status")]`)),
	); err != nil {
		t.Fatalf("try it out: %v", err)
	}
	status := run(t, bctx, chromedp.Text(chromedp.Search(response+`//tbody//td[contains(@class,"response-col_status")]`)))
	requestURL := run(t, bctx, chromedp.Text(chromedp.Search(op+`//div[contains(@class,"request-url")]//pre`)))
	body := run(t, bctx, chromedp.Text(chromedp.Search(response+`//pre[contains(@class,"microlight")]`)))
	save(t, "swagger-ui-try-it-out.png", run(t, bctx, chromedp.Screenshot(chromedp.Search(op))))
	if strings.TrimSpace(status) != "200" || !strings.HasPrefix(strings.TrimSpace(requestURL), p.base+"/tasker/tasks") ||
		!strings.Contains(body, `"namespace": "shop"`) {
		t.Errorf("try it out: status %q, request %q, body %.300q", status, requestURL, body)
	}
}

// newBrowser starts a headless browser for the test, closed when it ends
// (and after two minutes at most).
func newBrowser(t *testing.T, browser string) context.Context {
	t.Helper()
	// The machine has no network: without these flags Chromium waits on
	// connections it can never make.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 1600),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancel()
	})
	return bctx
}

// run runs one browser action, failing the test on error.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// save writes a screenshot where the test's artifacts go.
func save(t *testing.T, name string, png []byte) {
	t.Helper()
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
