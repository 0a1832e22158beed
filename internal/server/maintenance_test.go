package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLeadershipInStatusAndMetrics checks that a lone replica elects itself
// to run maintenance and says so in /health/status and /metrics.
func TestLeadershipInStatusAndMetrics(t *testing.T) {
	t.Parallel()
	r := startReplica(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, body := r.call(http.MethodGet, "/health/status", "", nil)
		var st struct {
			Leadership *struct {
				Leader bool   `json:"leader"`
				Holder string `json:"holder"`
			} `json:"leadership"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &st) != nil {
			t.Fatalf("status: %d %s", code, body)
		}
		if st.Leadership != nil && st.Leadership.Leader && st.Leadership.Holder != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leadership in status: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, _, metrics := r.call(http.MethodGet, "/metrics", "", nil)
	if code != http.StatusOK || !strings.Contains(string(metrics), "\ntasker_leader 1\n") {
		t.Fatalf("metrics (%d) lack tasker_leader 1", code)
	}
}
