package registry_test

import (
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/registry"
)

// An explicit remote:<queue> handler is a remote step, like Tasker's
// handler_class, and its config reaches the worker as written.
func TestRemoteHandler(t *testing.T) {
	t.Parallel()
	def := parse(t, `
name: refund
step_templates:
  - {name: policy, handler: "remote:refund_policy", handler_config: {max_cents: 100, timeout_seconds: 12}}
  - {name: legacy, handler_class: "Payments::Refund", depends_on_step: policy}
`, "")
	policy, _ := def.Template.Step("policy")
	if !policy.IsRemote() || policy.Queue() != "remote:refund_policy" || policy.Timeout != registry.Duration(12*time.Second) ||
		!strings.Contains(string(policy.HandlerConfig), `"max_cents":100`) {
		t.Errorf("policy: %+v %s", policy, policy.HandlerConfig)
	}
	legacy, _ := def.Template.Step("legacy")
	if legacy.Queue() != "remote:Payments::Refund" {
		t.Errorf("legacy queue %q", legacy.Queue())
	}
	for _, tc := range []struct{ queue, want string }{
		{"remote:refunds", ""},
		{"remote:Shop::Checkout::ValidateCartHandler", ""},
		{"remote:a.b/c-d_e", ""},
		{"refunds", "must start with"},
		{"remote:", "needs a name"},
		{"remote:has space", "may hold only"},
		{"remote:" + strings.Repeat("x", 200), "longer than 200"},
	} {
		err := registry.ValidateQueue(tc.queue)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ValidateQueue(%q) = %v, want %q", tc.queue, err, tc.want)
		}
	}
}
