package registry_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/registry"
)

func builtins(t testing.TB) *handler.Kinds {
	t.Helper()
	k, err := handler.NewKinds(handler.Builtins()...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func parse(t *testing.T, doc string, env string) *registry.Definition {
	t.Helper()
	def, err := registry.Parse([]byte(doc), registry.FormatYAML, registry.ParseConfig{Kinds: builtins(t), Env: env})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return def
}

func parseFile(t *testing.T, name, env string) *registry.Definition {
	t.Helper()
	path := filepath.Join("testdata", "corpus", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	def, err := registry.Parse(data, registry.FormatForFile(path), registry.ParseConfig{Kinds: builtins(t), Env: env})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return def
}

func sec(n float64) registry.Duration {
	return registry.Duration(time.Duration(n * float64(time.Second)))
}

// Every template of the corpus (Tasker's blog examples, in shape, and
// taskerd's own) loads unchanged, with the effective values Tasker gives it.
func TestCorpus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file       string
		full       string
		levels     [][]string
		checkSteps func(t *testing.T, tpl *registry.Template)
	}{
		{
			file:   "tasker_ecommerce_checkout.yaml",
			full:   "ecommerce.process_order@1.0.0",
			levels: [][]string{{"validate_cart"}, {"process_payment"}, {"update_inventory"}, {"create_order"}, {"send_confirmation"}},
			checkSteps: func(t *testing.T, tpl *registry.Template) {
				s, _ := tpl.Step("validate_cart")
				if s.Handler != "remote:Shop::Checkout::ValidateCartHandler" || s.Queue() != s.Handler || !s.IsRemote() {
					t.Errorf("handler_class step: handler %q queue %q", s.Handler, s.Queue())
				}
				if s.Timeout != sec(15) || s.RetryLimit != 3 || !s.Retryable {
					t.Errorf("validate_cart: timeout %s, limit %d, retryable %v", s.Timeout, s.RetryLimit, s.Retryable)
				}
				// A remote worker gets the config as Tasker wrote it.
				if string(s.HandlerConfig) != `{"timeout_seconds":15}` {
					t.Errorf("remote config: %s", s.HandlerConfig)
				}
				if s, _ := tpl.Step("send_confirmation"); s.RetryLimit != 5 || s.Description != "Email the receipt" {
					t.Errorf("send_confirmation: %+v", s)
				}
				if tpl.TaskHandlerClass != "Shop::Checkout::OrderProcessingHandler" || tpl.DefaultDependentSystem != "storefront" {
					t.Errorf("Tasker fields not kept: %+v", tpl)
				}
			},
		},
		{
			file:   "tasker_data_pipeline.yaml",
			full:   "data_pipeline.customer_analytics@1.0.0",
			levels: [][]string{{"extract_orders", "extract_users", "extract_products"}, {"transform_customer_metrics", "transform_product_metrics"}, {"generate_insights"}, {"update_dashboard"}, {"send_notifications"}},
			checkSteps: func(t *testing.T, tpl *registry.Template) {
				if s, _ := tpl.Step("transform_product_metrics"); s.Timeout != registry.Duration(registry.DefaultTimeout) {
					t.Errorf("no timeout_seconds: want the default timeout, got %s", s.Timeout)
				}
				if s, _ := tpl.Step("extract_orders"); s.Timeout != sec(1800) {
					t.Errorf("extract_orders timeout %s", s.Timeout)
				}
				if !strings.Contains(string(tpl.CustomEvents), "extraction_started") {
					t.Errorf("custom_events not kept: %s", tpl.CustomEvents)
				}
			},
		},
		{
			file:   "tasker_microservices_registration.yaml",
			full:   "accounts.user_registration@1.0.0",
			levels: [][]string{{"create_user_account"}, {"setup_billing_profile", "initialize_preferences"}, {"send_welcome_sequence"}, {"update_user_status"}},
		},
		{
			file:   "tasker_team_scaling_payments_refund.yaml",
			full:   "payments.process_refund@2.1.0",
			levels: [][]string{{"validate_payment_eligibility"}, {"process_gateway_refund"}, {"update_payment_records"}, {"notify_customer"}},
		},
		{
			file:   "tasker_team_scaling_customer_success_refund.yaml",
			full:   "customer_success.process_refund@1.3.0",
			levels: [][]string{{"validate_refund_request"}, {"check_refund_policy"}, {"get_manager_approval"}, {"execute_refund_workflow"}, {"update_ticket_status"}},
			checkSteps: func(t *testing.T, tpl *registry.Template) {
				if s, _ := tpl.Step("get_manager_approval"); s.Timeout != sec(300) || s.RetryLimit != 1 {
					t.Errorf("get_manager_approval: %s %d", s.Timeout, s.RetryLimit)
				}
			},
		},
		{
			file:   "tasker_generated.yaml",
			full:   "default.import_records@0.1.0",
			levels: [][]string{{"fetch_data"}, {"process_data"}, {"complete_task"}},
			checkSteps: func(t *testing.T, tpl *registry.Template) {
				if tpl.ModuleNamespace != "Imports" || len(tpl.NamedSteps) != 3 {
					t.Errorf("module_namespace / named_steps not kept: %+v", tpl)
				}
				if !reflect.DeepEqual(tpl.Environments, []string{"development", "test"}) || tpl.Environment != "" {
					t.Errorf("environments %v, applied %q", tpl.Environments, tpl.Environment)
				}
			},
		},
		{
			file:   "native_refund.yaml",
			full:   "payments.process_refund@3.0.0",
			levels: [][]string{{"validate_payment"}, {"issue_refund"}, {"notify_customer"}},
			checkSteps: func(t *testing.T, tpl *registry.Template) {
				s, _ := tpl.Step("issue_refund")
				want := registry.Backoff{Base: registry.Duration(500 * time.Millisecond), Max: sec(60)}
				if s.Handler != "fail" || s.RetryLimit != 5 || s.Timeout != sec(10) || s.Backoff != want || !s.Skippable || s.Queue() != "" {
					t.Errorf("issue_refund: %+v", s)
				}
				if string(s.HandlerConfig) != `{"failures":2}` {
					t.Errorf("config %s", s.HandlerConfig)
				}
			},
		},
		{
			file:   "native_diamond.json",
			full:   "demo.diamond@1.0.0",
			levels: [][]string{{"a"}, {"b", "c"}, {"d"}},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			def := parseFile(t, tc.file, "")
			tpl := def.Template
			if tpl.FullName() != tc.full {
				t.Fatalf("full name %q, want %q", tpl.FullName(), tc.full)
			}
			if len(def.ContentHash) != 64 || len(def.Canonical) == 0 {
				t.Errorf("hash %q, canonical %d bytes", def.ContentHash, len(def.Canonical))
			}
			if g := registry.DependencyGraph(tpl); !reflect.DeepEqual(g.Levels, tc.levels) {
				t.Errorf("levels %v, want %v", g.Levels, tc.levels)
			}
			if tc.checkSteps != nil {
				tc.checkSteps(t, tpl)
			}
			// The canonical form is a fixed point: parsing it again gives
			// the same document and hash (the database stores it).
			again, err := registry.Parse(def.Canonical, registry.FormatJSON, registry.ParseConfig{Kinds: builtins(t)})
			if err != nil {
				t.Fatalf("canonical form does not parse: %v", err)
			}
			if again.ContentHash != def.ContentHash || !reflect.DeepEqual(again.Template, tpl) {
				t.Errorf("canonical form is not stable:\n%s\n%s", def.Canonical, again.Canonical)
			}
		})
	}
}

// Documents that differ only in spelling have one hash.
func TestContentHashIgnoresSpelling(t *testing.T) {
	t.Parallel()
	yamlDoc := `
name: same
step_templates:
  - {name: a, handler: noop, timeout: 30000ms}
  - name: b
    handler: sleep
    handler_config: {duration: 1s}
    depends_on_step: a
`
	jsonDoc := `{"step_templates": [{"timeout": "30s", "handler": "noop", "name": "a"},
		{"name": "b", "handler_config": {"duration": "1s"}, "handler": "sleep", "depends_on_steps": ["a"]}],
		"name": "same", "namespace_name": "default", "version": "0.1.0"}`
	a := parse(t, yamlDoc, "")
	b, err := registry.Parse([]byte(jsonDoc), registry.FormatJSON, registry.ParseConfig{Kinds: builtins(t)})
	if err != nil {
		t.Fatal(err)
	}
	if a.ContentHash != b.ContentHash {
		t.Fatalf("hashes differ:\n%s\n%s", a.Canonical, b.Canonical)
	}
	c := parse(t, strings.Replace(yamlDoc, "duration: 1s", "duration: 2s", 1), "")
	if c.ContentHash == a.ContentHash {
		t.Fatal("a different config must change the hash")
	}
}

func TestEffectiveDefaults(t *testing.T) {
	t.Parallel()
	tpl := parse(t, `
name: defaults
step_templates:
  - {name: plain, handler: noop}
  - {name: from_tasker, handler: noop, handler_config: {timeout_seconds: 2.5}}
  - {name: explicit, handler: noop, timeout: 7s, handler_config: {timeout_seconds: 99}, default_retryable: false, default_retry_limit: 1}
`, "").Template
	if tpl.NamespaceName != "default" || tpl.Version != "0.1.0" {
		t.Errorf("namespace %q version %q", tpl.NamespaceName, tpl.Version)
	}
	plain := tpl.StepTemplates[0]
	want := registry.StepTemplate{
		Name: "plain", Handler: "noop", DependsOn: []string{}, Retryable: true, RetryLimit: 3, Timeout: sec(30),
		Backoff: registry.Backoff{Base: sec(1), Max: sec(300)},
	}
	if !reflect.DeepEqual(plain, want) {
		t.Errorf("plain step:\n got %+v\nwant %+v", plain, want)
	}
	if s := tpl.StepTemplates[1]; s.Timeout != registry.Duration(2500*time.Millisecond) || s.HandlerConfig != nil {
		t.Errorf("timeout_seconds: timeout %s, config %s (the kind must not see timeout_seconds)", s.Timeout, s.HandlerConfig)
	}
	if s := tpl.StepTemplates[2]; s.Timeout != sec(7) || s.Retryable || s.RetryLimit != 1 {
		t.Errorf("explicit step: %+v", s)
	}

	tpl = parse(t, `
name: template_defaults
defaults: {retry_limit: 7, timeout: 1m, backoff: {base: 100ms}}
step_templates:
  - {name: a, handler: noop}
  - {name: b, handler: noop, backoff: {max: 2s}, default_retry_limit: 2}
`, "").Template
	if a := tpl.StepTemplates[0]; a.RetryLimit != 7 || a.Timeout != sec(60) || a.Backoff != (registry.Backoff{Base: registry.Duration(100 * time.Millisecond), Max: sec(300)}) {
		t.Errorf("template defaults not applied: %+v", a)
	}
	if b := tpl.StepTemplates[1]; b.RetryLimit != 2 || b.Backoff != (registry.Backoff{Base: registry.Duration(100 * time.Millisecond), Max: sec(2)}) {
		t.Errorf("step over defaults: %+v", b)
	}
}

func TestEnvironmentOverlay(t *testing.T) {
	t.Parallel()
	doc := `
name: overlay
step_templates:
  - name: a
    handler: fail
    handler_config: {failures: 3, retry_after: 1s}
    inputs: {keep: 1, drop: 2}
  - {name: b, handler: noop, depends_on_step: a}
environments:
  staging:
    step_templates:
      - name: a
        handler_config: {failures: 0, retry_after: null}
        inputs: {drop: null, add: {x: 1}}
        timeout: 5s
  production:
    step_templates:
      - {name: b, default_retry_limit: 9}
`
	base := parse(t, doc, "").Template
	staging := parse(t, doc, "staging").Template
	prod := parse(t, doc, "production").Template
	none := parse(t, doc, "unknown_env").Template

	if string(base.StepTemplates[0].HandlerConfig) != `{"failures":3,"retry_after":"1s"}` {
		t.Errorf("base config %s", base.StepTemplates[0].HandlerConfig)
	}
	a := staging.StepTemplates[0]
	if string(a.HandlerConfig) != `{"failures":0}` || string(a.Inputs) != `{"add":{"x":1},"keep":1}` || a.Timeout != sec(5) {
		t.Errorf("staging overlay (merge patch): config %s inputs %s timeout %s", a.HandlerConfig, a.Inputs, a.Timeout)
	}
	if staging.Environment != "staging" || !reflect.DeepEqual(staging.StepTemplates[1], base.StepTemplates[1]) {
		t.Errorf("staging: env %q, b %+v", staging.Environment, staging.StepTemplates[1])
	}
	if prod.StepTemplates[1].RetryLimit != 9 || !reflect.DeepEqual(prod.StepTemplates[0], base.StepTemplates[0]) {
		t.Errorf("production overlay: %+v", prod.StepTemplates)
	}
	if none.Environment != "" || !reflect.DeepEqual(none.StepTemplates, base.StepTemplates) {
		t.Errorf("an environment the template does not declare applies nothing: %+v", none)
	}
	// The overlay is not part of the identity of a replica: every replica
	// stores and hashes the same document.
	if parse(t, doc, "staging").ContentHash != parse(t, doc, "").ContentHash {
		t.Error("content hash depends on the environment")
	}
}

func TestDependencyGraph(t *testing.T) {
	t.Parallel()
	tpl := parseFile(t, "native_diamond.json", "").Template
	g := registry.DependencyGraph(tpl)
	wantEdges := []registry.GraphEdge{
		{From: "a", To: "b", Type: "dependency"},
		{From: "a", To: "c", Type: "dependency"},
		{From: "b", To: "d", Type: "dependency"},
		{From: "c", To: "d", Type: "dependency"},
	}
	if !reflect.DeepEqual(g.Edges, wantEdges) {
		t.Errorf("edges %+v", g.Edges)
	}
	if !reflect.DeepEqual(g.Levels, [][]string{{"a"}, {"b", "c"}, {"d"}}) ||
		!reflect.DeepEqual(g.RootSteps, []string{"a"}) || !reflect.DeepEqual(g.LeafSteps, []string{"d"}) ||
		!reflect.DeepEqual(g.ExecutionOrder, []string{"a", "b", "c", "d"}) {
		t.Errorf("graph %+v", g)
	}
	wantMermaid := "graph TD\n  a[\"a\"]\n  b[\"b\"]\n  c[\"c\"]\n  d[\"d\"]\n  a --> b\n  a --> c\n  b --> d\n  c --> d\n"
	if g.Mermaid != wantMermaid {
		t.Errorf("mermaid:\n%s\nwant:\n%s", g.Mermaid, wantMermaid)
	}
	if len(g.Nodes) != 4 || g.Nodes[3].Level != 2 || g.Nodes[0].Type != "step" || string(g.Nodes[0].Configuration) != "{}" {
		t.Errorf("nodes %+v", g.Nodes)
	}

	// Mermaid cannot take "end" as a node id.
	g = registry.DependencyGraph(parse(t, "name: x\nstep_templates: [{name: start, handler: noop}, {name: end, handler: noop, depends_on_step: start}]", "").Template)
	if !strings.Contains(g.Mermaid, "step_end[\"end\"]") || !strings.Contains(g.Mermaid, "start --> step_end") {
		t.Errorf("reserved word: %s", g.Mermaid)
	}
}

func TestValidateContext(t *testing.T) {
	t.Parallel()
	def := parseFile(t, "tasker_ecommerce_checkout.yaml", "")
	reg := &registry.Registered{Template: def.Template}
	ok := `{"cart_items": [{"product_id": 1, "quantity": 2, "price": 9.5}], "payment_info": {"method": "paypal", "amount": 19}, "customer_info": {"email": "a@example.com"}}`
	if errs := reg.ValidateContext(json.RawMessage(ok)); errs != nil {
		t.Fatalf("valid context refused: %v", errs)
	}
	bad := `{"cart_items": [{"product_id": "x", "quantity": 0, "price": 1}], "payment_info": {"method": "cash", "amount": 1}, "customer_info": {"email": "not-an-email"}}`
	errs := reg.ValidateContext(json.RawMessage(bad))
	got := map[string]bool{}
	for _, e := range errs {
		got[e.Pointer] = true
		if e.Message == "" {
			t.Errorf("empty message at %s", e.Pointer)
		}
	}
	for _, p := range []string{"/cart_items/0/product_id", "/cart_items/0/quantity", "/payment_info/method", "/customer_info/email"} {
		if !got[p] {
			t.Errorf("no error at %s; got %+v", p, errs)
		}
	}
	if errs := reg.ValidateContext(nil); len(errs) != 1 || errs[0].Pointer != "" || !strings.Contains(errs[0].Message, "missing properties") {
		t.Errorf("empty context: %+v", errs)
	}
	if errs := (&registry.Registered{Template: &registry.Template{}}).ValidateContext(json.RawMessage(`{}`)); errs != nil {
		t.Errorf("no schema: %v", errs)
	}
}

func TestFormatForContentType(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]registry.Format{
		"":                                registry.FormatYAML,
		"application/json":                registry.FormatJSON,
		"application/json; charset=utf-8": registry.FormatJSON,
		"application/vnd.x+json":          registry.FormatJSON,
		"application/yaml":                registry.FormatYAML,
		"application/x-yaml":              registry.FormatYAML,
		"text/yaml":                       registry.FormatYAML,
	} {
		if got, err := registry.FormatForContentType(ct); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", ct, got, err, want)
		}
	}
	if _, err := registry.FormatForContentType("application/x-www-form-urlencoded"); err == nil {
		t.Error("form bodies must be refused")
	}
}

func TestParseNeedsKinds(t *testing.T) {
	t.Parallel()
	_, err := registry.Parse([]byte("name: x"), registry.FormatYAML, registry.ParseConfig{})
	var ve *registry.ValidationError
	if err == nil || errors.As(err, &ve) {
		t.Fatalf("want a configuration error, got %v", err)
	}
}

// Limits are parsed into the template, and their keys render from a
// task's context; the rate bucket of an http step is its host.
func TestLimitsAndTheirKeys(t *testing.T) {
	t.Parallel()
	httpKind, err := handler.NewHTTP(handler.HTTPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := handler.NewKinds(append(handler.Builtins(), httpKind)...)
	if err != nil {
		t.Fatal(err)
	}
	def, err := registry.Parse([]byte(`
namespace_name: shop
name: pay
concurrency: {limit: 3, key: "{{ .context.region }}"}
step_templates:
  - name: charge
    handler: http
    handler_config: {method: POST, url: "https://Pay.Example.com/charges/{{ .context.id }}"}
    concurrency: {key: "{{ .context.customer_id }}", limit: 1}
    rate_limit: {per_second: 2.5}
  - {name: ship, handler: "remote:shipping", rate_limit: {per_second: 1}}
  - {name: note, handler: noop, rate_limit: {per_second: 1, key: "{{ .context.region }}-notes"}}
  - {name: free, handler: noop}
`), registry.FormatYAML, registry.ParseConfig{Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := def.Template
	ctx := []byte(`{"region": "eu", "customer_id": "c7", "id": 1}`)
	key, limit, err := tmpl.TaskLimitKey(ctx)
	if err != nil || key != "task:shop.pay:eu" || limit != 3 {
		t.Fatalf("task key %q %d %v", key, limit, err)
	}
	charge, _ := tmpl.Step("charge")
	key, limit, err = tmpl.StepLimitKey(charge, ctx)
	if err != nil || key != "step:shop.pay.charge:c7" || limit != 1 {
		t.Fatalf("step key %q %d %v", key, limit, err)
	}
	for name, want := range map[string]string{"charge": "host:pay.example.com", "ship": "queue:remote:shipping", "note": "key:eu-notes", "free": ""} {
		st, _ := tmpl.Step(name)
		if got, _, err := st.RateKey(ctx); err != nil || got != want {
			t.Errorf("%s: rate key %q %v, want %q", name, got, err, want)
		}
	}
	if _, _, err := tmpl.StepLimitKey(charge, []byte(`{"region": "eu"}`)); err == nil {
		t.Fatal("a context without the key's field rendered a key")
	}
}
