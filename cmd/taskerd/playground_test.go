package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taskerd/taskerd/internal/testdb"
)

// TestGraphQLPlayground opens the GraphQL playground of the real binary in
// headless Chromium, checks that its script and styles come from taskerd
// itself (no CDN: the machines are offline), types a query for a task with
// its steps and their dependency levels into the editor, runs it with the
// Execute button, and reads the answer from the result pane.
func TestGraphQLPlayground(t *testing.T) {
	t.Parallel()
	browser := findChromium()
	if browser == "" {
		t.Skip("Chromium not found: install Debian's chromium (`make test` does when run as root) or set TASKER_CHROMIUM")
	}
	p := start(t, []string{"TASKER_DATABASE_URL=" + testdb.New(t), "TASKER_INSECURE_NO_AUTH=true"}, "serve")
	p.waitFor(t, "/tasker/health/ready", 200, 30*time.Second)
	// Remote steps no worker serves stay pending: the levels are fixed.
	resp, err := http.Post(p.base+"/tasker/templates", "application/yaml", strings.NewReader(
		"namespace_name: shop\nname: diamond\nversion: 1.0.0\nstep_templates:\n"+
			"  - {name: a, handler: \"remote:q\"}\n  - {name: b, handler: \"remote:q\", depends_on_step: a}\n"+
			"  - {name: c, handler: \"remote:q\", depends_on_steps: [a, b]}\n"))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = http.Post(p.base+"/tasker/tasks", "application/json", strings.NewReader(`{"namespace":"shop","name":"diamond"}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v %v", err, resp)
	}
	var created struct {
		TaskID string `json:"task_id"`
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(raw, &created); err != nil {
		t.Fatal(err)
	}

	bctx := newBrowser(t, browser)
	if err := chromedp.Do(bctx, chromedp.Navigate(p.base+"/tasker/graphql")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.querySelector('.CodeMirror') !== null &&
			document.querySelector('[title^="Execute Query"]') !== null`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		html := run(t, bctx, chromedp.Evaluate[string](`document.body.innerHTML.slice(0, 4000)`))
		save(t, "graphql-playground-failed.png", run(t, bctx, chromedp.CaptureScreenshot()))
		t.Fatalf("the playground did not load: %v\n%s", err, html)
	}
	// Every script and style sheet the page loaded came from taskerd.
	foreign := run(t, bctx, chromedp.Evaluate[[]string](`performance.getEntriesByType('resource')
		.filter(e => ['script', 'link', 'css'].includes(e.initiatorType) && !e.name.startsWith(location.origin))
		.map(e => e.name)`))
	if len(foreign) > 0 {
		t.Errorf("the playground loaded from elsewhere: %v", foreign)
	}
	query := fmt.Sprintf(`{ task(id: \"%s\") { status steps { name dependencyLevel dependsOn { name } } } }`, created.TaskID)
	run(t, bctx, chromedp.Evaluate[any](`document.querySelector('.CodeMirror').CodeMirror.setValue("`+query+`")`))
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`[title^="Execute Query"]`))); err != nil {
		t.Fatal(err)
	}
	// The result pane is the CodeMirror whose text is an answer.
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`Array.from(document.querySelectorAll('.CodeMirror')).some(e => e.CodeMirror && e.CodeMirror.getValue().includes('"data"'))`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		save(t, "graphql-playground-failed.png", run(t, bctx, chromedp.CaptureScreenshot()))
		t.Fatalf("running the query in the playground: %v", err)
	}
	result := run(t, bctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll('.CodeMirror'))
		.map(e => e.CodeMirror ? e.CodeMirror.getValue() : '').find(v => v.includes('"data"'))`))
	save(t, "graphql-playground.png", run(t, bctx, chromedp.CaptureScreenshot()))
	var answer struct {
		Data struct {
			Task struct {
				Status string `json:"status"`
				Steps  []struct {
					Name            string `json:"name"`
					DependencyLevel int    `json:"dependencyLevel"`
					DependsOn       []struct {
						Name string `json:"name"`
					} `json:"dependsOn"`
				} `json:"steps"`
			} `json:"task"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(result), &answer); err != nil {
		t.Fatalf("result pane: %v: %s", err, result)
	}
	levels := map[string]int{}
	for _, s := range answer.Data.Task.Steps {
		levels[s.Name] = s.DependencyLevel
	}
	if answer.Data.Task.Status != "pending" || len(answer.Data.Task.Steps) != 3 || levels["a"] != 0 || levels["b"] != 1 || levels["c"] != 2 ||
		len(answer.Data.Task.Steps[2].DependsOn) != 2 {
		t.Errorf("the playground's answer: %s", result)
	}
}
