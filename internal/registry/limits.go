package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strings"
	"text/template"
)

// Bounds of the limits a template may set.
const (
	maxConcurrencyLimit = 100_000
	maxRatePerSecond    = 100_000
	maxLimitKeyLength   = 200
)

// Concurrency caps how many steps of a step template (or tasks of a
// template) are in progress at once: Limit per value of Key, a template
// over the task's context ({{ .context.customer_id }}); without a Key, one
// limit for all of them. Steps and tasks beyond the limit wait, parked, and
// start in the order they became ready as others finish.
type Concurrency struct {
	Limit int    `json:"limit"`
	Key   string `json:"key,omitempty"`
}

// RateLimit spaces the starts of steps sharing a bucket at least
// 1/PerSecond seconds apart, across replicas. The bucket is Key (a template
// over the context) when set; otherwise the step's outbound host for the
// http kind, its queue for remote steps, else its handler kind. Buckets are
// global: every template naming the same one shares it.
type RateLimit struct {
	PerSecond float64 `json:"per_second"`
	Key       string  `json:"key,omitempty"`
}

// docConcurrency and docRateLimit are the limits as written.
type docConcurrency struct {
	Limit *int    `json:"limit,omitempty"`
	Key   *string `json:"key,omitempty"`
}

type docRateLimit struct {
	PerSecond *float64 `json:"per_second,omitempty"`
	Key       *string  `json:"key,omitempty"`
}

func parseKey(key string) (*template.Template, error) {
	return template.New("key").Option("missingkey=error").Parse(key)
}

// renderKey renders a key template over the task's context.
func renderKey(key string, context json.RawMessage) (string, error) {
	if key == "" {
		return "", nil
	}
	t, err := parseKey(key)
	if err != nil {
		return "", err
	}
	var ctx map[string]any
	if len(context) > 0 {
		if err := json.Unmarshal(context, &ctx); err != nil {
			return "", fmt.Errorf("context: %w", err)
		}
	}
	var b bytes.Buffer
	if err := t.Execute(&b, map[string]any{"context": ctx}); err != nil {
		return "", err
	}
	out := b.String()
	if len(out) > maxLimitKeyLength {
		return "", fmt.Errorf("renders to %d characters, at most %d", len(out), maxLimitKeyLength)
	}
	return out, nil
}

func (v *validator) concurrency(ptr string, d *docConcurrency) *Concurrency {
	if d == nil {
		return nil
	}
	c := &Concurrency{}
	switch {
	case d.Limit == nil:
		v.errs.add(ptr+"/limit", "is required: how many may run at once")
	case *d.Limit < 1 || *d.Limit > maxConcurrencyLimit:
		v.errs.add(ptr+"/limit", fmt.Sprintf("must be from 1 to %d, got %d", maxConcurrencyLimit, *d.Limit))
	default:
		c.Limit = *d.Limit
	}
	if d.Key != nil {
		v.limitKey(ptr+"/key", *d.Key)
		c.Key = *d.Key
	}
	return c
}

func (v *validator) rateLimit(ptr string, d *docRateLimit) *RateLimit {
	if d == nil {
		return nil
	}
	r := &RateLimit{}
	switch {
	case d.PerSecond == nil:
		v.errs.add(ptr+"/per_second", "is required: how many steps may start per second")
	case !(*d.PerSecond > 0) || *d.PerSecond > maxRatePerSecond || math.IsInf(*d.PerSecond, 0):
		v.errs.add(ptr+"/per_second", fmt.Sprintf("must be above 0 and at most %d, got %v", maxRatePerSecond, *d.PerSecond))
	default:
		r.PerSecond = *d.PerSecond
	}
	if d.Key != nil {
		v.limitKey(ptr+"/key", *d.Key)
		r.Key = *d.Key
	}
	return r
}

func (v *validator) limitKey(ptr, key string) {
	switch {
	case strings.TrimSpace(key) == "":
		v.errs.add(ptr, "must not be empty: leave key out for one limit over all")
	case len(key) > maxLimitKeyLength:
		v.errs.add(ptr, fmt.Sprintf("must be at most %d characters", maxLimitKeyLength))
	default:
		if _, err := parseKey(key); err != nil {
			v.errs.add(ptr, fmt.Sprintf("is not a valid template such as {{ .context.customer_id }}: %v", err))
		}
	}
}

// TaskLimitKey is the concurrency key of a task of t with this context ("":
// the template sets no task limit), and its limit. Keys are scoped to the
// template name: versions share them, other templates do not.
func (t *Template) TaskLimitKey(context json.RawMessage) (key string, limit int, err error) {
	if t.Concurrency == nil {
		return "", 0, nil
	}
	v, err := renderKey(t.Concurrency.Key, context)
	if err != nil {
		return "", 0, fmt.Errorf("concurrency key: %w", err)
	}
	return "task:" + t.NamespaceName + "." + t.Name + ":" + v, t.Concurrency.Limit, nil
}

// StepLimitKey is the concurrency key of step s of a task of t with this
// context ("" when the step sets none), and its limit; scoped to the
// template name and step name.
func (t *Template) StepLimitKey(s *StepTemplate, context json.RawMessage) (key string, limit int, err error) {
	if s.Concurrency == nil {
		return "", 0, nil
	}
	v, err := renderKey(s.Concurrency.Key, context)
	if err != nil {
		return "", 0, fmt.Errorf("step %s: concurrency key: %w", s.Name, err)
	}
	return "step:" + t.NamespaceName + "." + t.Name + "." + s.Name + ":" + v, s.Concurrency.Limit, nil
}

// RateKey is the token bucket of step s for a task with this context ("":
// the step sets no rate limit), and its rate.
func (s *StepTemplate) RateKey(context json.RawMessage) (key string, perSecond float64, err error) {
	if s.RateLimit == nil {
		return "", 0, nil
	}
	switch {
	case s.RateLimit.Key != "":
		v, err := renderKey(s.RateLimit.Key, context)
		if err != nil {
			return "", 0, fmt.Errorf("step %s: rate_limit key: %w", s.Name, err)
		}
		key = "key:" + v
	case s.IsRemote():
		key = "queue:" + s.Handler
	default:
		key = "handler:" + s.Handler
		if host := outboundHost(s.HandlerConfig); host != "" {
			key = "host:" + host
		}
	}
	return key, s.RateLimit.PerSecond, nil
}

// outboundHost is the host of an http step's url (written out, never a
// template: the http kind requires it), "" when there is none.
func outboundHost(config json.RawMessage) string {
	var c struct {
		URL string `json:"url"`
	}
	if json.Unmarshal(config, &c) != nil || c.URL == "" {
		return ""
	}
	u, err := url.Parse(strings.SplitN(c.URL, "{{", 2)[0])
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}
