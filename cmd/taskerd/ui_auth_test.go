package main_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taskerd/taskerd/internal/auth/authtest"
	"github.com/taskerd/taskerd/internal/testdb"
)

// TestSwaggerUIAuthorize is issue 10's "Authorize in the UI works": with
// TASKER_AUTH_MODE=jwt, the Swagger UI of the real binary shows an
// Authorize button; GET /tasks tried out from the page is refused with 401
// before a token is entered there and answered 200 after, the page sending
// the token in the Authorization header.
func TestSwaggerUIAuthorize(t *testing.T) {
	t.Parallel()
	browser := findChromium()
	if browser == "" {
		t.Skip("Chromium not found: install Debian's chromium (`make test` does when run as root) or set TASKER_CHROMIUM")
	}
	p := start(t, []string{"TASKER_DATABASE_URL=" + testdb.New(t), "TASKER_AUTH_MODE=jwt", "TASKER_JWT_SECRET=" + testSecret,
		"TASKER_JWT_ISSUER=" + authtest.Issuer, "TASKER_JWT_AUDIENCE=" + authtest.Audience}, "serve")
	p.waitFor(t, "/tasker/health/ready", 200, 30*time.Second)
	token := authtest.SignHS256(t, []byte(testSecret), authtest.Valid("swagger@example.com", "viewer"))

	bctx := newBrowser(t, browser)
	// The docs themselves are open: the page loads without a token.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(p.base+"/tasker/api-docs/"),
		chromedp.WaitVisible(chromedp.CSS(".opblock")),
		chromedp.WaitVisible(chromedp.CSS(".auth-wrapper .btn.authorize")),
	); err != nil {
		t.Fatalf("open the Swagger UI and find its Authorize button: %v", err)
	}

	op := `//div[contains(@class,"opblock-get")][.//span[@data-path="/tasks"]]`
	statusCell := op + `//table[contains(@class,"live-responses-table")]//tbody//td[contains(@class,"response-col_status")]`
	// execute runs "Try it out" of GET /tasks and returns the status the
	// page shows once it differs from before (the response table is reused).
	execute := func(before string) string {
		t.Helper()
		run(t, bctx, chromedp.Click(chromedp.Search(op+`//button[contains(@class,"execute")]`)))
		var status string
		deadline := time.Now().Add(30 * time.Second)
		for {
			status = strings.TrimSpace(run(t, bctx, chromedp.Evaluate[string](`(() => {
				const td = document.evaluate('`+statusCell+`', document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
				return td ? td.textContent : '';
			})()`)))
			if status != "" && status != before {
				return status
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page showed no new response status (was %q)", before)
			}
			time.Sleep(50 * time.Millisecond) // polling a page, not the engine
		}
	}
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.Search(op+`//button[contains(@class,"opblock-summary-control")]`)),
		chromedp.WaitVisible(chromedp.Search(op+`//button[contains(@class,"try-out__btn")]`)),
		chromedp.Click(chromedp.Search(op+`//button[contains(@class,"try-out__btn")]`)),
		chromedp.WaitVisible(chromedp.Search(op+`//button[contains(@class,"execute")]`)),
	); err != nil {
		t.Fatalf("try it out: %v", err)
	}
	if status := execute(""); !strings.HasPrefix(status, "401") {
		t.Fatalf("GET /tasks without a token: the page shows %q, want 401", status)
	}

	// Authorize: the apiKey dialog takes the header's whole value.
	modal := `.dialog-ux .modal-ux`
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(".auth-wrapper .btn.authorize")),
		chromedp.WaitVisible(chromedp.CSS(modal+` input`)),
		chromedp.SendKeys(chromedp.CSS(modal+` input`), "Bearer "+token),
		chromedp.Click(chromedp.CSS(modal+` .auth-btn-wrapper .btn.authorize`)),
		chromedp.WaitVisible(chromedp.CSS(modal+` .auth-btn-wrapper .btn-done`)),
	); err != nil {
		t.Fatalf("authorize: %v", err)
	}
	save(t, "swagger-ui-authorize.png", run(t, bctx, chromedp.CaptureScreenshot()))
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(modal+` .auth-btn-wrapper .btn-done`)),
		chromedp.WaitNotPresent(chromedp.CSS(modal)),
	); err != nil {
		t.Fatalf("close the Authorize dialog: %v", err)
	}
	status := execute("401")
	curl := run(t, bctx, chromedp.Text(chromedp.Search(op+`//div[contains(@class,"curl-command")]//code`)))
	save(t, "swagger-ui-authorized-try-it-out.png", run(t, bctx, chromedp.Screenshot(chromedp.Search(op))))
	if !strings.HasPrefix(status, "200") {
		t.Errorf("GET /tasks with the token entered in Authorize: the page shows %q, want 200", status)
	}
	if !strings.Contains(curl, "Authorization: Bearer "+token) {
		t.Errorf("the request the page sent has no bearer token: %s", curl)
	}

	// The same token, outside the browser, is what made the difference.
	req, _ := http.NewRequestWithContext(context.Background(), "GET", p.base+"/tasker/tasks", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /tasks with the token: %d", resp.StatusCode)
	}
}
