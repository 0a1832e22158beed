package handler_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/taskerd/taskerd/internal/handler"
)

func TestStepReferences(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		config string
		want   []string
	}{
		{`{}`, nil},
		{`{"url": "http://x/{{ .steps.a.results.id }}"}`, []string{"a"}},
		{`{"body": {"x": "{{ .steps.b.results }}", "y": ["{{ .steps.a.results.n }}", "{{ json .steps.b }}"]}}`, []string{"a", "b"}},
		{`{"headers": {"X": "{{ if .steps.c }}{{ .steps.d.results }}{{ else }}{{ .steps.e }}{{ end }}"}}`, []string{"c", "d", "e"}},
		// Inside with and range the dot is something else; else keeps it.
		{`{"url": "{{ with .context }}{{ .steps.x }}{{ else }}{{ .steps.f }}{{ end }}"}`, []string{"f"}},
		{`{"url": "{{ range .steps.g.results }}{{ .steps.y }}{{ end }}"}`, []string{"g"}},
		{`{"url": "{{ .context.steps.z }} {{ .inputs.steps }}"}`, nil},
		{`{"url": "{{ .steps.h | json }} {{ (.steps.i).results }}"}`, []string{"h", "i"}},
		{`{"url": "{{ .steps.broken"}`, nil}, // not a template: ValidateConfig says so
		{`not json`, nil},
	} {
		got := handler.StepReferences(json.RawMessage(tc.config))
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.config, got, tc.want)
		}
	}
}
