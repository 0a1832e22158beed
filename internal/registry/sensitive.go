package registry

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
)

// Redacted replaces a sensitive value wherever it would appear: API
// responses, logs, events, webhook payloads and span attributes.
const Redacted = "[REDACTED]"

// sensitiveKeyword marks a property of a template's context schema whose
// values must not leave the handlers that need them.
const sensitiveKeyword = "x-sensitive"

// minTextForm is the shortest sensitive value replaced inside free text.
// A shorter one ("7", "ok") cannot be told apart from ordinary words and
// numbers of a message; it is still replaced where it is a whole JSON
// value.
const minTextForm = 3

// HasSensitiveContext reports whether the template's schema marks any
// property "x-sensitive" (a cheap test before redacting).
func (r *Registered) HasSensitiveContext() bool {
	return r != nil && r.Template != nil && bytes.Contains(r.Template.Schema, []byte(sensitiveKeyword))
}

// RedactContext returns doc with every value whose subschema in the
// template's schema says "x-sensitive": true replaced by Redacted, and
// whether anything was replaced. doc is returned unchanged when the
// template marks nothing sensitive or doc is not JSON.
func (r *Registered) RedactContext(doc json.RawMessage) (json.RawMessage, bool) {
	schema := r.sensitiveSchema()
	if schema == nil || len(doc) == 0 {
		return doc, false
	}
	var v any
	if json.Unmarshal(doc, &v) != nil || !redactSensitive(schema, &v) {
		return doc, false
	}
	out, err := json.Marshal(v)
	if err != nil {
		return doc, false
	}
	return out, true
}

// ContextScrubber returns the scrubber of the sensitive values of one
// task's context, for what handlers say about it (error messages, custom
// event payloads) before it reaches logs, events, webhooks and traces.
// It is empty when the template marks nothing sensitive.
func (r *Registered) ContextScrubber(doc json.RawMessage) Scrubber {
	schema := r.sensitiveSchema()
	if schema == nil || len(doc) == 0 {
		return Scrubber{}
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber() // numbers keep their text, as handlers would print it
	var v any
	if dec.Decode(&v) != nil {
		return Scrubber{}
	}
	var values []string
	collectSensitive(schema, v, false, &values)
	return newScrubber(values)
}

// sensitiveSchema is the template's schema decoded, or nil when it marks
// nothing sensitive. It is decoded per call: only templates that mark
// properties pay for it, once per task read or step attempt.
func (r *Registered) sensitiveSchema() any {
	if !r.HasSensitiveContext() {
		return nil
	}
	var schema any
	if json.Unmarshal(r.Template.Schema, &schema) != nil {
		return nil
	}
	return schema
}

// redactSensitive walks doc along schema's properties and items and
// replaces every value whose subschema says "x-sensitive": true; it
// reports a change.
func redactSensitive(schema any, doc *any) bool {
	s, ok := schema.(map[string]any)
	if !ok || *doc == nil {
		return false
	}
	if s[sensitiveKeyword] == true {
		*doc = Redacted
		return true
	}
	changed := false
	switch d := (*doc).(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for name, sub := range props {
			v, ok := d[name]
			if !ok {
				continue
			}
			if redactSensitive(sub, &v) {
				d[name], changed = v, true
			}
		}
	case []any:
		for i := range d {
			if redactSensitive(s["items"], &d[i]) {
				changed = true
			}
		}
	}
	return changed
}

// collectSensitive gathers the scalar values of doc that lie under a
// subschema saying "x-sensitive": true (every scalar below it, when an
// object or array is marked as a whole).
func collectSensitive(schema any, doc any, marked bool, out *[]string) {
	s, _ := schema.(map[string]any)
	if s != nil && s[sensitiveKeyword] == true {
		marked = true
	}
	switch d := doc.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for name, v := range d {
			var sub any
			if props != nil {
				sub = props[name]
			}
			if sub == nil && !marked {
				continue
			}
			collectSensitive(sub, v, marked, out)
		}
	case []any:
		var items any
		if s != nil {
			items = s["items"]
		}
		for _, v := range d {
			collectSensitive(items, v, marked, out)
		}
	case string:
		if marked && d != "" {
			*out = append(*out, d)
		}
	case json.Number:
		if marked {
			*out = append(*out, d.String())
		}
	}
}

// Scrubber replaces the sensitive values of one task's context, in the
// forms they take once printed (as is, JSON-escaped, URL-escaped), by
// Redacted. The zero Scrubber changes nothing.
type Scrubber struct {
	values map[string]bool // exact values, replaced where they are a whole JSON value
	forms  []string        // longest first, replaced inside text
}

func newScrubber(values []string) Scrubber {
	if len(values) == 0 {
		return Scrubber{}
	}
	sc := Scrubber{values: map[string]bool{}}
	for _, v := range values {
		sc.values[v] = true
		if len(v) < minTextForm {
			continue
		}
		q, _ := json.Marshal(v)
		sc.forms = append(sc.forms, v, string(q[1:len(q)-1]), url.QueryEscape(v), url.PathEscape(v))
	}
	slices.SortFunc(sc.forms, func(a, b string) int { return len(b) - len(a) })
	sc.forms = slices.Compact(sc.forms)
	return sc
}

// Empty reports whether the scrubber has nothing to replace.
func (s Scrubber) Empty() bool { return len(s.values) == 0 }

// Text returns t without the sensitive values.
func (s Scrubber) Text(t string) string {
	if s.values[t] {
		return Redacted
	}
	for _, f := range s.forms {
		t = strings.ReplaceAll(t, f, Redacted)
	}
	return t
}

// JSON returns doc with the sensitive values replaced in every string
// (keys included) and every number equal to one. doc is returned as is
// when nothing was replaced or it is not JSON.
func (s Scrubber) JSON(doc json.RawMessage) json.RawMessage {
	if s.Empty() || len(doc) == 0 {
		return doc
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return doc
	}
	changed := false
	var walk func(any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case string:
			if t := s.Text(v); t != v {
				changed = true
				return t
			}
		case json.Number:
			if s.values[v.String()] {
				changed = true
				return Redacted
			}
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, e := range v {
				if t := s.Text(k); t != k {
					changed, k = true, t
				}
				out[k] = walk(e)
			}
			return out
		case []any:
			for i := range v {
				v[i] = walk(v[i])
			}
		}
		return v
	}
	v = walk(v)
	if !changed {
		return doc
	}
	out, err := json.Marshal(v)
	if err != nil {
		return doc
	}
	return out
}
