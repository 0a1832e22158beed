package registration_test

import (
	"testing"
	"time"

	"github.com/taskerd/taskerd/examples/internal/e2e"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]string{"worker": "github.com/taskerd/taskerd/examples/03-microservices-coordination/worker"})
}

// TestRegistration runs the README's scenario: the billing service answers
// 503 with Retry-After: 1 and taskerd waits that long (not its 100 ms
// backoff) before the next attempt; the preferences come from the remote
// worker, run as a separate program.
func TestRegistration(t *testing.T) {
	t.Parallel()
	env := e2e.Start(t)
	env.RegisterFile("templates/user_registration.yaml")
	worker := e2e.Run(t, "worker", []string{"TASKER_URL=" + env.Base, "WORKER_ID=example-03"}, e2e.Bin("worker"))
	env.SetMode("billing", `{"mode": "503", "retry_after": 1, "failures": 1}`)

	id := env.CreateTask("microservices", "user_registration", map[string]any{"email": "ada@example.com", "name": "Ada", "plan": "pro"})
	task := env.WaitTask(id, "complete", 30*time.Second)

	billing := env.Calls("billing")
	if len(billing) != 2 || billing[0].Status != 503 || billing[1].Status != 201 {
		t.Fatalf("billing calls %+v, want 503 then 201", billing)
	}
	if gap := billing[1].At.Sub(billing[0].At); gap < 950*time.Millisecond || gap > 3*time.Second {
		t.Errorf("the billing retry came %v after the 503, want Retry-After's 1s", gap)
	}
	prefs, _ := e2e.Step(task, "initialize_preferences")["results"].(map[string]any)
	p, _ := prefs["preferences"].(map[string]any)
	if prefs["worker"] != "go" || prefs["user_id"] != "usr_0001" || p["theme"] != "light" || p["priority_support"] != true {
		t.Errorf("initialize_preferences results %v", prefs)
	}
	status, _ := e2e.Step(task, "update_user_status")["results"].(map[string]any)
	if status["status"] != "active" || status["user_id"] != "usr_0001" {
		t.Errorf("update_user_status results %v", status)
	}
	// The welcome sequence waited for both branches.
	welcome := env.Calls("welcome")
	if len(welcome) != 1 || !welcome[0].At.After(billing[1].At) {
		t.Errorf("welcome calls %+v, want one after billing's success", welcome)
	}
	worker.Stop(t)
	env.Taskerd.Stop(t)
	env.Mocks.Stop(t)
}
