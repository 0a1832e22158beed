package registry_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/registry"
)

// want is one expected error: its exact pointer and a part of its message.
type want struct{ pointer, message string }

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		format registry.Format
		doc    string
		want   []want // every error, in document order
	}{
		{"missing name", "", `step_templates: [{name: a, handler: noop}]`,
			[]want{{"/name", "is required"}}},
		{"bad name", "", `{name: Process-Order, step_templates: [{name: a, handler: noop}]}`,
			[]want{{"/name", `must match [a-z0-9_]+ (lower-case letters, digits and underscores), got "Process-Order"`}}},
		{"bad namespace", "", `{namespace_name: "pay ments", name: x, step_templates: [{name: a, handler: noop}]}`,
			[]want{{"/namespace_name", "must match [a-z0-9_]+"}}},
		{"name too long", "", `{name: ` + strings.Repeat("x", 129) + `, step_templates: [{name: a, handler: noop}]}`,
			[]want{{"/name", "at most 128 characters"}}},
		{"semver without patch", "", `{name: x, version: "1.0", step_templates: [{name: a, handler: noop}]}`,
			[]want{{"/version", `must be a semantic version such as 1.2.0, got "1.0"`}}},
		{"semver with v", "", `{name: x, version: v1.2.3, step_templates: [{name: a, handler: noop}]}`,
			[]want{{"/version", "semantic version"}}},
		{"version as a number", "", `{name: x, version: 1.5, step_templates: [{name: a, handler: noop}]}`,
			[]want{{"/version", "must be a string, got the number 1.5"}}},
		{"no steps", "", `{name: x}`,
			[]want{{"/step_templates", "at least one step template is required"}}},
		{"steps not a list", "", `{name: x, step_templates: {a: 1}}`,
			[]want{{"/step_templates", "must be an array, got an object"}}},
		{"bad step name", "", `{name: x, step_templates: [{name: "Step A", handler: noop}]}`,
			[]want{{"/step_templates/0/name", "must match"}}},
		{"step without name", "", `{name: x, step_templates: [{handler: noop}]}`,
			[]want{{"/step_templates/0/name", "is required"}}},
		{"duplicate step names", "", `{name: x, step_templates: [{name: a, handler: noop}, {name: b, handler: noop}, {name: a, handler: echo}]}`,
			[]want{{"/step_templates/2/name", `duplicate step name "a" (also /step_templates/0)`}}},
		{"unknown dependency", "", `
name: x
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: noop}
  - {name: c, handler: noop}
  - {name: d, handler: noop, depends_on_steps: [nope, a, also_nope]}
`, []want{
			{"/step_templates/3/depends_on_steps/0", `depends on unknown step "nope"`},
			{"/step_templates/3/depends_on_steps/2", `depends on unknown step "also_nope"`},
		}},
		{"unknown depends_on_step", "", `{name: x, step_templates: [{name: a, handler: noop}, {name: b, handler: noop, depends_on_step: z}]}`,
			[]want{{"/step_templates/1/depends_on_step", `unknown step "z"`}}},
		{"cycle", "", `
name: x
step_templates:
  - {name: a, handler: noop, depends_on_step: c}
  - {name: b, handler: noop, depends_on_step: a}
  - {name: c, handler: noop, depends_on_steps: [b]}
  - {name: d, handler: noop, depends_on_step: c}
`, []want{{"/step_templates/0/depends_on_step", "dependency cycle: a → b → c → a"}}},
		{"two cycles and a self-loop", "", `
name: x
step_templates:
  - {name: a, handler: noop, depends_on_steps: [b]}
  - {name: b, handler: noop, depends_on_steps: [a]}
  - {name: c, handler: noop, depends_on_steps: [c]}
  - {name: d, handler: noop, depends_on_steps: [e, a]}
  - {name: e, handler: noop, depends_on_steps: [d]}
`, []want{
			{"/step_templates/0/depends_on_steps/0", "dependency cycle: a → b → a"},
			{"/step_templates/2/depends_on_steps/0", "dependency cycle: c → c"},
			{"/step_templates/3/depends_on_steps/0", "dependency cycle: d → e → d"},
		}},
		{"unknown kinds", "", `
name: x
step_templates:
  - {name: a, handler: http}
  - {name: b, handler: "remote:billing"}
  - {name: c, handler: subtask}
  - {name: d, handler: "remote:"}
  - {name: e, handler: "remote:bad queue"}
`, []want{
			{"/step_templates/0/handler", `unknown handler kind "http"; known kinds: echo, fail, noop, sleep`},
			{"/step_templates/2/handler", `unknown handler kind "subtask"`},
			{"/step_templates/3/handler", `needs a name after "remote:"`},
			{"/step_templates/4/handler", `may hold only letters`},
		}},
		{"no handler", "", `{name: x, step_templates: [{name: a}]}`,
			[]want{{"/step_templates/0/handler", "is required"}}},
		{"handler_config rejected by its kind", "", `
name: x
step_templates:
  - {name: a, handler: sleep}
  - {name: b, handler: fail, handler_config: {failures: -1}}
  - {name: c, handler: noop, handler_config: {url: "http://x"}}
  - {name: d, handler: sleep, handler_config: {duration: soon}}
`, []want{
			{"/step_templates/0/handler_config", `rejected by handler kind "sleep": "duration" is required`},
			{"/step_templates/1/handler_config", `rejected by handler kind "fail": "failures" must be 0 or more`},
			{"/step_templates/2/handler_config", `rejected by handler kind "noop": unknown field "url"`},
			{"/step_templates/3/handler_config", `"duration" must be a Go duration`},
		}},
		{"handler_config not an object", "", `{name: x, step_templates: [{name: a, handler_class: Foo, handler_config: [1]}]}`,
			[]want{{"/step_templates/0/handler_config", "must be an object"}}},
		{"bad timeout_seconds", "", `{name: x, step_templates: [{name: a, handler_class: Foo, handler_config: {timeout_seconds: "ten"}}]}`,
			[]want{{"/step_templates/0/handler_config", "timeout_seconds must be a number of seconds above zero"}}},
		{"invalid schema", "", `
name: x
schema:
  type: object
  properties:
    amount: {type: money, minimum: "zero"}
step_templates: [{name: a, handler: noop}]
`, []want{
			{"/schema/properties/amount/minimum", "not a valid JSON Schema"},
			{"/schema/properties/amount/type", "not a valid JSON Schema"},
		}},
		{"schema not an object", "", `{name: x, schema: [1], step_templates: [{name: a, handler: noop}]}`,
			[]want{{"/schema", "must be a JSON Schema"}}},
		{"schema with an external ref", "", `{name: x, schema: {$ref: "file:///etc/passwd"}, step_templates: [{name: a, handler: noop}]}`,
			[]want{{"/schema", "cannot refer to other documents"}}},
		{"bad durations", "", `
name: x
defaults: {timeout: forever, backoff: {base: 2s, max: 1s}}
step_templates:
  - {name: a, handler: noop, timeout: 10}
  - {name: b, handler: noop, timeout: 0s}
  - {name: c, handler: noop, backoff: {base: 1h}}
  - {name: d, handler: noop, timeout: "-5s"}
`, []want{
			{"/defaults/backoff/max", "backoff max 1s is below base 2s"},
			{"/defaults/timeout", `must be a Go duration such as 200ms, 30s or 5m, got "forever"`},
			{"/step_templates/0/timeout", "must be a string, got the number 10"},
			{"/step_templates/1/timeout", `must be above zero, got "0s"`},
			{"/step_templates/2/backoff/base", "backoff max 1s is below base 1h0m0s"},
			{"/step_templates/3/timeout", "must be above zero"},
		}},
		{"retry limits", "", `
name: x
defaults: {retry_limit: 0}
step_templates:
  - {name: a, handler: noop, default_retry_limit: -1}
  - {name: b, handler: noop, default_retry_limit: 2.5}
  - {name: c, handler: noop, default_retry_limit: "3"}
`, []want{
			{"/defaults/retry_limit", "must be at least 1"},
			{"/step_templates/0/default_retry_limit", "must be at least 1"},
			{"/step_templates/1/default_retry_limit", "must be a whole number, got 2.5"},
			{"/step_templates/2/default_retry_limit", "must be a whole number, got a string"},
		}},
		{"bad limits", "", `
name: x
concurrency: {limit: 0}
step_templates:
  - {name: a, handler: noop, concurrency: {key: "{{ .context.customer_id"}}
  - {name: b, handler: noop, rate_limit: {per_second: -1}, concurrency: {limit: 2, key: " "}}
  - {name: c, handler: noop, rate_limit: {}}
`, []want{
			{"/concurrency/limit", "must be from 1 to 100000, got 0"},
			{"/step_templates/0/concurrency/key", "is not a valid template"},
			{"/step_templates/0/concurrency/limit", "is required"},
			{"/step_templates/1/concurrency/key", "must not be empty"},
			{"/step_templates/1/rate_limit/per_second", "must be above 0"},
			{"/step_templates/2/rate_limit/per_second", "is required"},
		}},
		{"unknown fields everywhere", "", `
name: x
nmae: typo
defaults: {retries: 3}
step_templates:
  - {name: a, handler: noop, depends_on: [b], backoff: {min: 1s}}
environments:
  staging: {step_templates: [{name: a, retry: 1}], extra: true}
`, []want{
			{"/defaults/retries", `unknown field "retries"`},
			{"/environments/staging/extra", `unknown field "extra"`},
			{"/environments/staging/step_templates/0/retry", `unknown field "retry"`},
			{"/nmae", `unknown field "nmae"`},
			{"/step_templates/0/backoff/min", `unknown field "min"`},
			{"/step_templates/0/depends_on", `unknown field "depends_on"`},
		}},
		{"environments naming unknown steps", "", `
name: x
step_templates: [{name: a, handler: fail, handler_config: {failures: 1}}, {name: b, handler: noop, depends_on_step: a}]
environments:
  staging:
    step_templates:
      - {name: nope, timeout: 1s}
      - {name: a, handler_config: {failures: -2}}
      - {name: b, depends_on_steps: []}
      - {name: a, timeout: 2s}
  qa:
    step_templates:
      - {name: a, handler: sleep}
      - {timeout: 2s}
`, []want{
			{"/environments/qa/step_templates/0/handler", `rejected by handler kind "sleep"`},
			{"/environments/qa/step_templates/1/name", "is required"},
			{"/environments/staging/step_templates/0/name", `environment "staging" names unknown step "nope"`},
			{"/environments/staging/step_templates/1/handler_config", `"failures" must be 0 or more, got -2`},
			{"/environments/staging/step_templates/2/depends_on_steps", "cannot change a step's dependencies"},
			{"/environments/staging/step_templates/3/name", `step "a" is overlaid twice`},
		}},
		{"custom events", "", `{name: x, custom_events: {a: 1}, step_templates: [{name: a, handler: noop, custom_events: [{description: no name}]}]}`,
			[]want{
				{"/custom_events", "must be a list of events"},
				{"/step_templates/0/custom_events/0/name", "a custom event needs a name"},
			}},
		{"null list element", "", `{name: x, step_templates: [{name: a, handler: noop}, null]}`,
			[]want{{"/step_templates/1", "must not be null"}}},
		{"many errors at once", "", `
namespace_name: Bad
name: ""
version: one
step_templates:
  - {name: a, handler: nope}
  - {name: a, handler: noop, depends_on_step: ghost}
`, []want{
			{"/name", "is required"},
			{"/namespace_name", "must match"},
			{"/step_templates/0/handler", "unknown handler kind"},
			{"/step_templates/1/depends_on_step", "unknown step"},
			{"/step_templates/1/name", "duplicate step name"},
			{"/version", "semantic version"},
		}},
		{"malformed YAML", "", "name: x\nstep_templates:\n  - name: a\n   handler: noop\n",
			[]want{{"", "malformed YAML: line 2"}}},
		{"two YAML documents", "", "name: x\n---\nname: y\n",
			[]want{{"", "more than one YAML document"}}},
		{"duplicate YAML keys", "", "name: x\nname: y\n",
			[]want{{"", `mapping key "name" already defined`}}},
		{"empty document", "", "",
			[]want{{"", "the document is empty"}}},
		{"not an object", "", "- a\n- b\n",
			[]want{{"", "a template must be an object, got an array"}}},
		{"malformed JSON", registry.FormatJSON, `{"name": "x",}`,
			[]want{{"", "malformed JSON at line 1, column 14"}}},
		{"JSON with trailing data", registry.FormatJSON, `{"name": "x"} {}`,
			[]want{{"", "unexpected data after the JSON value"}}},
		{"YAML is not JSON", registry.FormatJSON, "name: x\n",
			[]want{{"", "malformed JSON"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			format := tc.format
			if format == "" {
				format = registry.FormatYAML
			}
			_, err := registry.Parse([]byte(tc.doc), format, registry.ParseConfig{Kinds: builtins(t), Env: "staging"})
			var ve *registry.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *ValidationError, got %v", err)
			}
			if len(ve.Errors) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(ve.Errors), len(tc.want), list(ve.Errors))
			}
			for i, w := range tc.want {
				got := ve.Errors[i]
				if got.Pointer != w.pointer || !strings.Contains(got.Message, w.message) {
					t.Errorf("error %d: got %q %q, want %q containing %q\nall:\n%s", i, got.Pointer, got.Message, w.pointer, w.message, list(ve.Errors))
				}
			}
		})
	}
}

func list(errs []registry.FieldError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "  %q: %s\n", e.Pointer, e.Message)
	}
	return b.String()
}

// The error text itself names every problem, for logs and the CLI.
func TestValidationErrorText(t *testing.T) {
	t.Parallel()
	_, err := registry.Parse([]byte(`{name: X, step_templates: [{name: a, handler: nope}]}`), registry.FormatYAML, registry.ParseConfig{Kinds: builtins(t)})
	if err == nil || !strings.Contains(err.Error(), "2 errors") || !strings.Contains(err.Error(), "/name:") || !strings.Contains(err.Error(), "/step_templates/0/handler:") {
		t.Fatalf("error text: %v", err)
	}
}
