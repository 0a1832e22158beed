package registry_test

import (
	"encoding/json"
	"testing"

	"github.com/taskerd/taskerd/internal/registry"
)

const sensitiveSchema = `{"type":"object","properties":{
  "token":{"type":"string","x-sensitive":true},
  "pin":{"type":"integer","x-sensitive":true},
  "cards":{"type":"array","items":{"type":"object","properties":{"number":{"type":"string","x-sensitive":true},"brand":{"type":"string"}}}},
  "vault":{"type":"object","x-sensitive":true},
  "tip":{"type":"string","x-sensitive":true},
  "amount":{"type":"number"}}}`

const sensitiveContext = `{"token":"tok/a b&c","pin":4821,"cards":[{"number":"4111-1111","brand":"visa"}],
  "vault":{"key":"k-123456","nested":["n-999"]},"tip":"ab","amount":4821.5,"other":"tok/a b&c"}`

func sensitiveTemplate(schema string) *registry.Registered {
	return &registry.Registered{Template: &registry.Template{Schema: json.RawMessage(schema)}}
}

func TestRedactContext(t *testing.T) {
	t.Parallel()
	out, changed := sensitiveTemplate(sensitiveSchema).RedactContext(json.RawMessage(sensitiveContext))
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil || !changed {
		t.Fatalf("RedactContext: %s %v", out, changed)
	}
	card := got["cards"].([]any)[0].(map[string]any)
	if got["token"] != registry.Redacted || got["pin"] != registry.Redacted || got["vault"] != registry.Redacted ||
		got["tip"] != registry.Redacted || card["number"] != registry.Redacted {
		t.Errorf("sensitive values left: %s", out)
	}
	// A property the schema does not declare is not known to be sensitive.
	if card["brand"] != "visa" || got["amount"] != 4821.5 || got["other"] != "tok/a b&c" {
		t.Errorf("other values changed: %s", out)
	}
	if out, changed := sensitiveTemplate(`{"type":"object"}`).RedactContext(json.RawMessage(sensitiveContext)); changed || string(out) != sensitiveContext {
		t.Errorf("a schema without x-sensitive changed the context: %s", out)
	}
}

func TestContextScrubber(t *testing.T) {
	t.Parallel()
	sc := sensitiveTemplate(sensitiveSchema).ContextScrubber(json.RawMessage(sensitiveContext))
	if sc.Empty() {
		t.Fatal("no sensitive values found")
	}
	const r = registry.Redacted
	for _, c := range []struct{ in, want string }{
		{"GET https://x/pay?t=tok%2Fa+b%26c: 502", "GET https://x/pay?t=" + r + ": 502"}, // query-escaped
		{"POST https://x/tok%2Fa%20b&c", "POST https://x/" + r},                          // path-escaped
		{`body {"t":"tok/a b\u0026c"}`, `body {"t":"` + r + `"}`},                        // as encoding/json writes it
		{"card 4111-1111 pin 4821 vault k-123456 n-999", "card " + r + " pin " + r + " vault " + r + " " + r},
		{"amount 4821.5", "amount " + r + ".5"}, // the pin inside a longer number: erring on the safe side
		{"tip ab in about", "tip ab in about"},  // too short to replace inside text
		{"ab", r},                               // but replaced as a whole value
	} {
		if got := sc.Text(c.in); got != c.want {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	doc := sc.JSON(json.RawMessage(`{"pin":4821,"attempt":1,"msg":"tok/a b&c","tok/a b&c":true,"list":["ab","abc"],"amount":4821.5}`))
	var got map[string]any
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"pin": r, "attempt": 1.0, "msg": r, r: true, "list": []any{r, "abc"}, "amount": 4821.5}
	if b, _ := json.Marshal(want); string(b) != string(doc) {
		t.Errorf("JSON = %s, want %s", doc, b)
	}
	if same := sc.JSON(json.RawMessage(`{"fine":1}`)); string(same) != `{"fine":1}` {
		t.Errorf("a clean document was rewritten: %s", same)
	}
	if !(registry.Scrubber{}).Empty() || (registry.Scrubber{}).Text("x") != "x" {
		t.Error("the zero Scrubber must change nothing")
	}
}
