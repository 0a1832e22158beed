package registry_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/registry"
)

// fuzzKinds are the kinds `taskerd serve` has, so the fuzzer reaches the
// http and subtask config validation too.
func fuzzKinds(f *testing.F) *handler.Kinds {
	f.Helper()
	httpKind, err := handler.NewHTTP(handler.HTTPConfig{})
	if err != nil {
		f.Fatal(err)
	}
	k, err := handler.NewKinds(append(handler.Builtins(), httpKind, handler.NewSubtask())...)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

// addCorpusDocuments seeds f with the checked-in template corpus, so the
// fuzzer starts from real templates of every feature.
func addCorpusDocuments(f *testing.F, add func(data []byte, json bool)) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "corpus", "*"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no template corpus: %v", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		add(data, registry.FormatForFile(p) == registry.FormatJSON)
	}
}

// FuzzParseTemplate feeds arbitrary documents to the template parser and
// validator. A document is either refused with a *ValidationError that
// lists at least one problem, or accepted; an accepted document's
// canonical form parses again to the same hash (the canonical form is a
// fixed point), and its dependency graph can be drawn.
func FuzzParseTemplate(f *testing.F) {
	kinds := fuzzKinds(f)
	addCorpusDocuments(f, func(data []byte, isJSON bool) { f.Add(data, isJSON, "") })
	for _, seed := range []string{
		"", "{}", "[]", "null", "name: x", "&a [*a]", "a: &a {b: *a}",
		"namespace_name: n\nname: t\nversion: 1.0.0\nstep_templates:\n  - {name: a, handler: noop}\n  - {name: b, handler: noop, depends_on_step: a}\n",
		"name: t\nversion: 1.0.0\nstep_templates:\n  - {name: a, handler: noop, depends_on_step: b}\n  - {name: b, handler: noop, depends_on_step: a}\n",
		"name: t\nversion: 1.0.0\nschema: {type: object, properties: {n: {$ref: 'file:///etc/passwd'}}}\nstep_templates: [{name: a, handler: noop}]\n",
		"name: t\nversion: 1.0.0\nenvironments: {prod: {step_templates: [{name: a, handler_config: {duration: 1s}}]}}\nstep_templates: [{name: a, handler: sleep, handler_config: {duration: 1ms}}]\n",
		"name: t\nversion: 1.0.0\nstep_templates: [{name: a, handler: http, handler_config: {url: 'http://x/{{ .context.id }}', timeout_seconds: 1e308}}]\n",
	} {
		f.Add([]byte(seed), false, "prod")
	}
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool, env string) {
		format := registry.FormatYAML
		if isJSON {
			format = registry.FormatJSON
		}
		def, err := registry.Parse(data, format, registry.ParseConfig{Kinds: kinds, Env: env})
		if err != nil {
			var invalid *registry.ValidationError
			if !errors.As(err, &invalid) || len(invalid.Errors) == 0 {
				t.Fatalf("refused without a validation error listing the problems: %#v", err)
			}
			_ = invalid.Error()
			return
		}
		if def.Template == nil || len(def.Canonical) == 0 || def.ContentHash == "" {
			t.Fatalf("accepted without a template, canonical form or hash: %+v", def)
		}
		if !json.Valid(def.Canonical) {
			t.Fatalf("canonical form is not JSON: %s", def.Canonical)
		}
		again, err := registry.Parse(def.Canonical, registry.FormatJSON, registry.ParseConfig{Kinds: kinds, Env: env})
		if err != nil {
			t.Fatalf("the canonical form of an accepted template is refused: %v\n%s", err, def.Canonical)
		}
		if again.ContentHash != def.ContentHash {
			t.Fatalf("canonical form is not a fixed point: %s then %s\n%s\n%s", def.ContentHash, again.ContentHash, def.Canonical, again.Canonical)
		}
		g := registry.DependencyGraph(def.Template)
		_ = g
	})
}

// FuzzValidateContext feeds arbitrary schemas and task contexts to the
// context validation a task create runs: it answers with problems or
// none, and never panics or hangs on a hostile schema or document.
func FuzzValidateContext(f *testing.F) {
	for _, seed := range [][2]string{
		{`{"type":"object","required":["order_id"],"properties":{"order_id":{"type":"integer","minimum":1}}}`, `{"order_id":42}`},
		{`{"type":"object","required":["order_id"],"properties":{"order_id":{"type":"integer","minimum":1}}}`, `{"order_id":"x"}`},
		{`{"type":"object","properties":{"email":{"type":"string","format":"email"},"at":{"type":"string","format":"date-time"}}}`, `{"email":"nope","at":"yesterday"}`},
		{`{"type":"object","additionalProperties":false,"patternProperties":{"^[a-z]+$":{"type":"number"}}}`, `{"abc":1e400,"ABC":1}`},
		{`{"$defs":{"n":{"anyOf":[{"type":"null"},{"type":"array","items":{"$ref":"#/$defs/n"}}]}},"$ref":"#/$defs/n"}`, `[[[[[[[[[[[[[[[[[[[[null]]]]]]]]]]]]]]]]]]]]`},
		{`{"properties":{"x":{"$ref":"file:///etc/passwd"}}}`, `{"x":1}`},
		{`{"type":"string","pattern":"(a+)+$"}`, `"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"`},
		{`true`, `{}`},
		{`false`, `{}`},
		{`{"type":"object"}`, ``},
		{`{"type":"object"}`, `{"a":1,"a":2}`},
		{`[]`, `{}`},
		{`{"minLength":"x"}`, `"x"`},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	f.Fuzz(func(t *testing.T, schema, doc []byte) {
		reg := &registry.Registered{Template: &registry.Template{Schema: schema}}
		for _, fe := range reg.ValidateContext(doc) {
			if fe.Message == "" {
				t.Fatalf("a context problem without a message: %+v", fe)
			}
		}
	})
}

// A NUL character anywhere in a template (PostgreSQL stores none) is a
// validation error at its pointer, not a failed registration; found by
// FuzzHTTPRequestBody as a 500.
func TestParseRefusesNUL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		doc    string
		format registry.Format
		want   string
	}{
		{"name: t\nversion: 1.0.0\ndescription: \"a\\0b\"\nstep_templates: [{name: a, handler: noop}]\n", registry.FormatYAML, "/description"},
		{"name: t\nversion: 1.0.0\nstep_templates: [{name: a, handler: noop, inputs: {\"k\\0\": 1}}]\n", registry.FormatYAML, "/step_templates/0/inputs/k\x00"},
		{`{"name":"t","version":"1.0.0","step_templates":[{"name":"a","handler":"echo","inputs":["x","\u0000"]}]}`, registry.FormatJSON, "/step_templates/0/inputs/1"},
	} {
		_, err := registry.Parse([]byte(tc.doc), tc.format, registry.ParseConfig{Kinds: builtins(t)})
		var invalid *registry.ValidationError
		if !errors.As(err, &invalid) || len(invalid.Errors) != 1 || invalid.Errors[0].Pointer != tc.want || !strings.Contains(invalid.Errors[0].Message, "NUL") {
			t.Errorf("%q: %v, want one NUL error at %q", tc.doc, err, tc.want)
		}
	}
}
