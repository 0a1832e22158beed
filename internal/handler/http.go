package handler

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskerd/taskerd/internal/version"
)

// KindHTTP is the name of the declarative HTTP kind.
const KindHTTP = "http"

// DefaultMaxResponseBytes caps a response body the http kind reads.
const DefaultMaxResponseBytes = 1 << 20

// DefaultDenyCIDRs are the networks outbound requests may not reach unless
// TASKER_HTTP_DENY_CIDRS says otherwise: link-local addresses, where cloud
// metadata services answer (169.254.169.254 and its IPv6 forms), and
// Alibaba Cloud's metadata address. A template author must not be able to
// read the replica's cloud credentials.
var DefaultDenyCIDRs = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fd00:ec2::254/128"),
	netip.MustParsePrefix("100.100.100.200/32"),
}

// ParseCIDRs reads a comma-separated list of networks (a bare address is a
// single host); "none" is the empty list.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "none" {
		return []netip.Prefix{}, nil
	}
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR (169.254.0.0/16) nor an address", part)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// DeniedAddressError is a connection refused because its address is in a
// denied network.
type DeniedAddressError struct {
	Addr    netip.Addr
	Network netip.Prefix
}

func (e *DeniedAddressError) Error() string {
	return fmt.Sprintf("connecting to %s is refused: it is in %s (TASKER_HTTP_DENY_CIDRS)", e.Addr, e.Network)
}

// GuardedDialer dials like net.Dialer but refuses addresses in deny. The
// check runs on the resolved address of each connection, so neither a
// hostname that resolves to a denied address nor a redirect gets around it.
// Webhooks dial through it too.
func GuardedDialer(deny []netip.Prefix) *net.Dialer {
	deny = slices.Clone(deny)
	return &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			a, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("unexpected address %q", address)
			}
			a = a.Unmap()
			for _, p := range deny {
				if p.Contains(a) {
					return &DeniedAddressError{Addr: a, Network: p}
				}
			}
			return nil
		},
	}
}

// HTTPConfig configures the http kind.
type HTTPConfig struct {
	// DenyCIDRs are refused as destinations; nil means DefaultDenyCIDRs, an
	// empty slice refuses nothing.
	DenyCIDRs []netip.Prefix
	// MaxResponseBytes caps the response body read; larger fails the step
	// for good. Default 1 MiB.
	MaxResponseBytes int64
	// LookupEnv reads secrets; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Propagator writes the trace context of the step's attempt (in the
	// handler's context) into each request; nil means W3C Trace Context
	// (traceparent, tracestate).
	Propagator propagation.TextMapPropagator
}

// HTTP is the declarative HTTP kind (Tasker's API steps): it sends one
// request built from templates over the step's data and turns the response
// into the step's outcome. 2xx (or the configured success statuses)
// completes with the JSON response; 429 and 503 with Retry-After are
// retried after the delay the service asked for; other 5xx, timeouts and
// connection errors are retried with backoff; any other status fails the
// step for good with the response body in the error.
type HTTP struct {
	client      *http.Client
	maxResponse int64
	lookup      func(string) (string, bool)
	userAgent   string
	propagator  propagation.TextMapPropagator
}

// NewHTTP returns the http kind.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	deny := cfg.DenyCIDRs
	if deny == nil {
		deny = DefaultDenyCIDRs
	}
	var propagator propagation.TextMapPropagator = propagation.TraceContext{}
	if cfg.Propagator != nil {
		propagator = cfg.Propagator
	}
	transport := &http.Transport{
		// A proxy would hide the destination from the deny list.
		Proxy:                 nil,
		DialContext:           GuardedDialer(deny).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &HTTP{
		client: &http.Client{
			Transport: transport,
			// Redirects are not followed: a redirect would carry the
			// step's headers, secrets included, to another address.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		maxResponse: cmp.Or(cfg.MaxResponseBytes, DefaultMaxResponseBytes),
		lookup:      cfg.LookupEnv,
		userAgent:   "taskerd/" + version.Get().Version,
		propagator:  propagator,
	}, nil
}

// Name is "http".
func (*HTTP) Name() string { return KindHTTP }

// HTTPStepConfig is the http kind's handler_config.
type HTTPStepConfig struct {
	// Method is GET (default), POST, PUT, PATCH, DELETE, HEAD or OPTIONS.
	Method string `json:"method,omitempty"`
	// URL is a template; its scheme and host are written out, and values
	// interpolated into it are escaped. Required.
	URL string `json:"url"`
	// Headers are name → value template.
	Headers map[string]string `json:"headers,omitempty"`
	// Query are parameters added to the URL's: name → value template.
	Query map[string]string `json:"query,omitempty"`
	// Body is any JSON value, sent as JSON; its strings are templates.
	Body json.RawMessage `json:"body,omitempty"`
	// Timeout bounds the request (a Go duration); the step's timeout
	// applies in any case.
	Timeout string `json:"timeout,omitempty"`
	// SuccessStatus lists the statuses that complete the step: numbers, or
	// classes such as "2xx". Default ["2xx"].
	SuccessStatus []json.RawMessage `json:"success_status,omitempty"`
	// Result is what the step keeps: "body" (default: the JSON body, or
	// the text as a JSON string), "response" ({status, headers, body}),
	// "none" (null), or a JSON pointer into the body ("/data/id").
	Result string `json:"result,omitempty"`
	// EventsField names where a successful response lists custom business
	// events to emit: a top-level field ("events") or a JSON pointer
	// ("/meta/events"). Its value is an array of {name, payload}; each name
	// must be declared in the step template's custom_events (or the
	// template's), else the step fails for good. A response without the
	// field emits nothing.
	EventsField string `json:"events_field,omitempty"`
}

var httpMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

// reservedHeaders are set by taskerd on every request.
var reservedHeaders = []string{"Idempotency-Key", "Traceparent", "X-Correlation-Id", "Host", "Content-Length",
	"Transfer-Encoding", "Connection"}

var headerNamePattern = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

// parsedHTTPConfig is a validated config.
type parsedHTTPConfig struct {
	HTTPStepConfig
	timeout time.Duration
	success []statusMatch
}

type statusMatch struct{ lo, hi int }

func (m statusMatch) matches(code int) bool { return code >= m.lo && code <= m.hi }

func parseHTTPConfig(config json.RawMessage) (*parsedHTTPConfig, error) {
	var c parsedHTTPConfig
	if err := decodeConfig(config, &c.HTTPStepConfig); err != nil {
		return nil, err
	}
	c.Method = strings.ToUpper(cmp.Or(c.Method, "GET"))
	if !slices.Contains(httpMethods, c.Method) {
		return nil, fmt.Errorf(`"method" must be one of %s, got %q`, strings.Join(httpMethods, ", "), c.Method)
	}
	if c.URL == "" {
		return nil, errors.New(`"url" is required, e.g. "https://api.example.com/orders/{{ .context.order_id }}"`)
	}
	if err := validateURLTemplate(c.URL); err != nil {
		return nil, fmt.Errorf(`"url": %w`, err)
	}
	for _, name := range sortedKeys(c.Headers) {
		if !headerNamePattern.MatchString(name) {
			return nil, fmt.Errorf(`"headers": %q is not a valid header name`, name)
		}
		if slices.Contains(reservedHeaders, http.CanonicalHeaderKey(name)) {
			return nil, fmt.Errorf(`"headers": %s is set by taskerd`, name)
		}
		if _, err := parseTemplate(c.Headers[name], true); err != nil {
			return nil, fmt.Errorf(`"headers": %s: %w`, name, err)
		}
	}
	for _, name := range sortedKeys(c.Query) {
		if _, err := parseTemplate(c.Query[name], true); err != nil {
			return nil, fmt.Errorf(`"query": %s: %w`, name, err)
		}
	}
	if len(c.Body) > 0 {
		if c.Method == "GET" || c.Method == "HEAD" {
			return nil, fmt.Errorf(`"body" is not sent with %s`, c.Method)
		}
		if err := validateJSONTemplate(c.Body, true); err != nil {
			return nil, fmt.Errorf(`"body": %w`, err)
		}
	}
	if c.Timeout != "" {
		d, err := parseDuration("timeout", c.Timeout)
		if err != nil {
			return nil, err
		}
		if d <= 0 {
			return nil, errors.New(`"timeout" must be above zero`)
		}
		c.timeout = d
	}
	if len(c.SuccessStatus) == 0 {
		c.success = []statusMatch{{200, 299}}
	}
	for _, raw := range c.SuccessStatus {
		m, err := parseStatusMatch(raw)
		if err != nil {
			return nil, err
		}
		c.success = append(c.success, m)
	}
	switch {
	case c.Result == "", c.Result == "body", c.Result == "response", c.Result == "none":
	case strings.HasPrefix(c.Result, "/"):
	default:
		return nil, fmt.Errorf(`"result" must be body, response, none or a JSON pointer such as /data, got %q`, c.Result)
	}
	if c.Method == "HEAD" && c.EventsField != "" {
		return nil, errors.New(`"events_field" needs a response body, which HEAD has not`)
	}
	return &c, nil
}

func parseStatusMatch(raw json.RawMessage) (statusMatch, error) {
	var n int
	if json.Unmarshal(raw, &n) == nil {
		if n < 100 || n > 599 {
			return statusMatch{}, fmt.Errorf(`"success_status": %d is not an HTTP status`, n)
		}
		return statusMatch{n, n}, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && len(s) == 3 && s[0] >= '1' && s[0] <= '5' && strings.EqualFold(s[1:], "xx") {
		lo := int(s[0]-'0') * 100
		return statusMatch{lo, lo + 99}, nil
	}
	return statusMatch{}, fmt.Errorf(`"success_status" entries are statuses (201) or classes ("2xx"), got %s`, raw)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ValidateConfig checks the method, the URL template (scheme and host
// written out), headers, query, body templates and the other fields.
func (*HTTP) ValidateConfig(config json.RawMessage) error {
	_, err := parseHTTPConfig(config)
	return err
}

// Handle sends the request and classifies the response.
func (k *HTTP) Handle(ctx context.Context, step Step) (json.RawMessage, error) {
	c, err := parseHTTPConfig(step.Config)
	if err != nil {
		return nil, Permanent(fmt.Errorf("http: %w", err))
	}
	data, err := stepData(step)
	if err != nil {
		return nil, Permanent(fmt.Errorf("http: %w", err))
	}
	env := &renderEnv{data: data, secret: envSecrets(step.Namespace, k.lookup)}
	red := redactor{env: env}
	req, display, err := k.request(ctx, c, env, step)
	if err != nil {
		return nil, Permanent(red.err(fmt.Errorf("http: %w", err)))
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.timeout, fmt.Errorf("request timed out after %s", c.timeout))
		defer cancel()
		req = req.WithContext(ctx)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, red.err(k.transportError(ctx, display, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, k.maxResponse+1))
	if err != nil {
		return nil, red.err(k.transportError(ctx, display, err))
	}
	if int64(len(body)) > k.maxResponse {
		return nil, Permanent(fmt.Errorf("%s: %s: the response body is larger than %d bytes", display, resp.Status, k.maxResponse))
	}
	if slices.ContainsFunc(c.success, func(m statusMatch) bool { return m.matches(resp.StatusCode) }) {
		results, err := httpResults(c.Result, resp, body)
		if err != nil {
			return nil, Permanent(red.err(fmt.Errorf("%s: %s: %w", display, resp.Status, err)))
		}
		if c.EventsField != "" {
			if err := emitResponseEvents(step, c.EventsField, body, red); err != nil {
				return nil, Permanent(red.err(fmt.Errorf("%s: %s: events_field %s: %w", display, resp.Status, c.EventsField, err)))
			}
		}
		return red.json(results)
	}
	failure := red.err(fmt.Errorf("%s: %s%s", display, resp.Status, bodySnippet(body)))
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return nil, RetryAfter(failure, d)
		}
		return nil, failure
	case code >= 500:
		return nil, failure
	default:
		return nil, Permanent(failure)
	}
}

// request builds the request; display names it in errors and logs without
// its query string.
func (k *HTTP) request(ctx context.Context, c *parsedHTTPConfig, env *renderEnv, step Step) (*http.Request, string, error) {
	raw, err := env.renderURL(c.URL)
	if err != nil {
		return nil, c.Method + " " + c.URL, fmt.Errorf("url: %w", err)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, c.Method + " " + c.URL, errors.New("url: the rendered URL is not an http(s) URL")
	}
	display := c.Method + " " + (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
	if len(c.Query) > 0 {
		q := u.Query()
		for _, name := range sortedKeys(c.Query) {
			v, err := env.renderString(c.Query[name])
			if err != nil {
				return nil, display, fmt.Errorf("query %s: %w", name, err)
			}
			q.Add(name, v)
		}
		u.RawQuery = q.Encode()
	}
	var body io.Reader
	if len(c.Body) > 0 {
		b, err := env.renderJSON(c.Body)
		if err != nil {
			return nil, display, fmt.Errorf("body: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, u.String(), body)
	if err != nil {
		return nil, display, errors.New("the request cannot be built")
	}
	for _, name := range sortedKeys(c.Headers) {
		v, err := env.renderString(c.Headers[name])
		if err != nil {
			return nil, display, fmt.Errorf("header %s: %w", name, err)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, display, fmt.Errorf("header %s: the value holds a line break or NUL", name)
		}
		req.Header.Set(name, v)
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("User-Agent", k.userAgent)
	correlation := cmp.Or(step.CorrelationID, step.TaskID.String())
	req.Header.Set("X-Correlation-ID", correlation)
	if trace.SpanContextFromContext(ctx).IsValid() {
		// The engine put the attempt's span in ctx (telemetry's
		// DecorateStep): the service's spans become its children.
		k.propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	}
	if req.Header.Get("Traceparent") == "" {
		req.Header.Set("Traceparent", childTraceparent(step.Traceparent))
	}
	// The same key on every attempt, so the service can deduplicate retries.
	req.Header.Set("Idempotency-Key", step.StepID.String())
	return req, display, nil
}

// transportError classifies a failure to get a response: a denied address
// is permanent, everything else (timeouts, refused connections, resets) is
// retried. The URL is left out: its query may hold secrets.
func (k *HTTP) transportError(ctx context.Context, display string, err error) error {
	var denied *DeniedAddressError
	if errors.As(err, &denied) {
		return Permanent(fmt.Errorf("%s: %w", display, denied))
	}
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, ctx.Err()) {
			return fmt.Errorf("%s: %w", display, cause)
		}
		return fmt.Errorf("%s: %w", display, ctx.Err())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s: %w", display, err)
}

// httpResults is what a successful step keeps of the response.
func httpResults(mode string, resp *http.Response, body []byte) (json.RawMessage, error) {
	asJSON := func() (json.RawMessage, error) {
		trimmed := bytes.TrimSpace(body)
		switch {
		case len(trimmed) == 0:
			return json.RawMessage("null"), nil
		case json.Valid(trimmed):
			return trimmed, nil
		default:
			return json.Marshal(string(body))
		}
	}
	switch {
	case mode == "none":
		return json.RawMessage("null"), nil
	case mode == "response":
		b, err := asJSON()
		if err != nil {
			return nil, err
		}
		headers := map[string]string{}
		for name, vs := range resp.Header {
			headers[strings.ToLower(name)] = strings.Join(vs, ", ")
		}
		return json.Marshal(map[string]any{"status": resp.StatusCode, "headers": headers, "body": b})
	case strings.HasPrefix(mode, "/"):
		var doc any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("result %s: the response body is not JSON", mode)
		}
		v, ok := jsonPointer(doc, mode)
		if !ok {
			return nil, fmt.Errorf("result %s: the response has no value there", mode)
		}
		return json.Marshal(v)
	default:
		return asJSON()
	}
}

// emitResponseEvents emits the custom events a response lists at field (a
// top-level name or a JSON pointer), in order, their payloads redacted of
// the attempt's secrets. The whole list is checked before any is emitted,
// but a name the template does not declare is only known at Emit: events
// before it are published with the step's failure, as a Go handler's
// would be.
func emitResponseEvents(step Step, field string, body []byte, red redactor) error {
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return errors.New("the response body is not JSON")
	}
	ptr := field
	if !strings.HasPrefix(ptr, "/") {
		ptr = "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(field)
	}
	v, ok := jsonPointer(doc, ptr)
	if !ok || v == nil {
		return nil // no events this time
	}
	list, ok := v.([]any)
	if !ok {
		return fmt.Errorf("must be an array of {name, payload}, got %T", v)
	}
	if len(list) > MaxCustomEvents {
		return fmt.Errorf("%d events, above the limit of %d per attempt", len(list), MaxCustomEvents)
	}
	events := make([]CustomEvent, 0, len(list))
	for i, item := range list {
		obj, ok := item.(map[string]any)
		name, _ := obj["name"].(string)
		if !ok || name == "" {
			return fmt.Errorf("event %d must be an object with a name", i)
		}
		payload, err := json.Marshal(obj["payload"])
		if err != nil {
			return fmt.Errorf("event %d (%s): %w", i, name, err)
		}
		if payload, err = red.json(payload); err != nil {
			return fmt.Errorf("event %d (%s): %w", i, name, err)
		}
		events = append(events, CustomEvent{Name: name, Payload: payload})
	}
	for i, ev := range events {
		var err error
		if step.Emit == nil {
			err = fmt.Errorf("%w: %q (step %q declares no custom events)", ErrUndeclaredEvent, ev.Name, step.StepName)
		} else {
			err = step.Emit(ev.Name, ev.Payload)
		}
		if err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
	}
	return nil
}

// jsonPointer resolves an RFC 6901 pointer.
func jsonPointer(doc any, ptr string) (any, bool) {
	for _, tok := range strings.Split(ptr, "/")[1:] {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch v := doc.(type) {
		case map[string]any:
			c, ok := v[tok]
			if !ok {
				return nil, false
			}
			doc = c
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			doc = v[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// maxErrorBody is how much of an error response is kept in the step's error.
const maxErrorBody = 1024

func bodySnippet(body []byte) string {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxErrorBody {
		return ": " + strings.ToValidUTF8(string(b[:maxErrorBody]), "") + "…"
	}
	return ": " + strings.ToValidUTF8(string(b), "")
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return max(time.Duration(secs*float64(time.Second)), time.Millisecond), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), time.Millisecond), true
	}
	return 0, false
}

var traceparentPattern = regexp.MustCompile(`^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$`)

// childTraceparent continues the task's trace with a new span id, or starts
// a trace when the task has none: for engines without telemetry, where no
// attempt span exists to name as the caller.
func childTraceparent(parent string) string {
	span := make([]byte, 8)
	_, _ = rand.Read(span)
	if m := traceparentPattern.FindStringSubmatch(parent); m != nil && m[1] != strings.Repeat("0", 32) {
		return "00-" + m[1] + "-" + hex.EncodeToString(span) + "-" + m[2]
	}
	trace := make([]byte, 16)
	_, _ = rand.Read(trace)
	return "00-" + hex.EncodeToString(trace) + "-" + hex.EncodeToString(span) + "-01"
}

// redactor removes the secrets an attempt used from what leaves it: error
// messages and results (a service may echo a token back).
type redactor struct{ env *renderEnv }

// Redacted replaces a secret wherever it would appear.
const Redacted = "[REDACTED]"

func (r redactor) forms() []string {
	var out []string
	for _, s := range r.env.used {
		if s == "" {
			continue
		}
		q, _ := json.Marshal(s)
		out = append(out, s, string(q[1:len(q)-1]), url.QueryEscape(s), url.PathEscape(s))
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) }) // longest first
	return slices.Compact(out)
}

func (r redactor) text(s string) string {
	for _, f := range r.forms() {
		s = strings.ReplaceAll(s, f, Redacted)
	}
	return s
}

// err rewrites an error's message without the secrets, keeping how the
// engine should treat it.
func (r redactor) err(err error) error {
	if err == nil || len(r.env.used) == 0 {
		return err
	}
	msg := r.text(err.Error())
	if msg == err.Error() {
		return err
	}
	retryable, after := Classify(err)
	return &Error{Err: errors.New(msg), Retryable: retryable, RetryAfter: after}
}

// json redacts every string (keys included) of a JSON document.
func (r redactor) json(doc json.RawMessage) (json.RawMessage, error) {
	if len(r.env.used) == 0 {
		return doc, nil
	}
	if !strings.Contains(r.text(string(doc)), Redacted) {
		return doc, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, Permanent(errors.New("the response cannot be redacted"))
	}
	var walk func(any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case string:
			return r.text(v)
		case json.Number:
			if r.text(string(v)) != string(v) {
				return Redacted
			}
			return v
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, c := range v {
				out[r.text(k)] = walk(c)
			}
			return out
		case []any:
			for i, c := range v {
				v[i] = walk(c)
			}
			return v
		}
		return v
	}
	return json.Marshal(walk(v))
}
