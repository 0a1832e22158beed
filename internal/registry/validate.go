package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/taskerd/taskerd/internal/handler"
)

// namePattern is what namespaces, template names and step names match:
// they appear in URLs, JSON pointers, queue names and Mermaid graphs.
var namePattern = regexp.MustCompile(`^[a-z0-9_]+$`)

// maxNameLength bounds names; nothing longer is a name a person chose.
const maxNameLength = 128

// timeoutSecondsKey is Tasker's handler_config key for a step's timeout.
// The registry consumes it: it sets the step's timeout and is not shown to
// the kind (a kind's config validation need not know about it).
const timeoutSecondsKey = "timeout_seconds"

// ParseConfig says how to read a template.
type ParseConfig struct {
	// Kinds checks handler names and configs; required.
	Kinds *handler.Kinds
	// Env names the environments overlay applied to the result ("" for none).
	// Every overlay is validated whatever Env is.
	Env string
}

// Definition is a valid template document.
type Definition struct {
	// Template is the effective template for ParseConfig.Env.
	Template *Template
	// Canonical is the normalised document: what is stored and hashed. It
	// holds every environment's overlay, so it is the same on every replica.
	Canonical json.RawMessage
	// ContentHash is the hex SHA-256 of Canonical: two documents that differ
	// only in syntax (YAML or JSON, key order, spacing, "30000ms" or "30s",
	// depends_on_step or depends_on_steps) have the same hash.
	ContentHash string

	// baseSteps are the steps with no overlay: what named_steps records,
	// the same on every replica.
	baseSteps []StepTemplate
	schema    *contextSchema
}

// Parse reads and validates a template. A document with problems returns a
// *ValidationError listing every one, each with a JSON pointer.
func Parse(data []byte, format Format, cfg ParseConfig) (*Definition, error) {
	if cfg.Kinds == nil {
		return nil, errors.New("registry: ParseConfig.Kinds is required")
	}
	errs := &errorList{}
	doc, ok := decodeDocument(data, format, errs)
	if !ok {
		return nil, &ValidationError{Errors: errs.sorted()}
	}
	v := &validator{kinds: cfg.Kinds, errs: errs}
	def := v.validate(doc, cfg.Env)
	if !errs.empty() {
		return nil, &ValidationError{Errors: errs.sorted()}
	}
	return def, nil
}

type validator struct {
	kinds *handler.Kinds
	errs  *errorList
}

// validate checks doc, normalises it in place into its canonical form and
// returns the definition (meaningful only when no error was recorded).
func (v *validator) validate(doc *docTemplate, env string) *Definition {
	t := &Template{}

	doc.NamespaceName = orDefault(doc.NamespaceName, DefaultNamespace)
	t.NamespaceName = v.name("/namespace_name", *doc.NamespaceName)
	if doc.Name == nil {
		v.errs.add("/name", "is required")
	} else {
		t.Name = v.name("/name", *doc.Name)
	}
	doc.Version = orDefault(doc.Version, DefaultVersion)
	if _, err := semver.StrictNewVersion(*doc.Version); err != nil {
		v.errs.add("/version", fmt.Sprintf("must be a semantic version such as 1.2.0, got %q", *doc.Version))
	}
	t.Version = *doc.Version
	t.Description = deref(doc.Description)

	var schema *contextSchema
	if doc.Schema = canonicalJSON(doc.Schema); doc.Schema != nil {
		var schemaErrs []FieldError
		schema, schemaErrs = compileContextSchema(doc.Schema)
		for _, fe := range schemaErrs {
			v.errs.add("/schema"+fe.Pointer, fe.Message)
		}
		t.Schema = doc.Schema
	}

	t.Defaults = v.defaults(doc.Defaults)
	t.Concurrency = v.concurrency("/concurrency", doc.Concurrency)

	doc.HandlerConfig = canonicalJSON(doc.HandlerConfig)
	v.object("/handler_config", doc.HandlerConfig)
	doc.CustomEvents = canonicalJSON(doc.CustomEvents)
	v.customEvents("/custom_events", doc.CustomEvents)
	t.TaskHandlerClass = deref(doc.TaskHandlerClass)
	t.ModuleNamespace = deref(doc.ModuleNamespace)
	t.DefaultDependentSystem = deref(doc.DefaultDependentSystem)
	t.NamedSteps = doc.NamedSteps
	t.HandlerConfig = doc.HandlerConfig
	t.CustomEvents = doc.CustomEvents

	// Steps, as written.
	if len(doc.StepTemplates) == 0 {
		v.errs.add("/step_templates", "at least one step template is required")
	}
	index := map[string]int{}
	base := make([]StepTemplate, len(doc.StepTemplates))
	origins := make([][]string, len(doc.StepTemplates))
	for i := range doc.StepTemplates {
		ptr := "/step_templates/" + strconv.Itoa(i)
		d := &doc.StepTemplates[i]
		origins[i] = foldDependencies(d, ptr)
		canonicalStep(d)
		base[i] = v.step(d, t.Defaults, func(field string) (string, bool) { return ptr + "/" + field, true })
		if d.Name == nil {
			continue
		}
		if first, dup := index[*d.Name]; dup {
			v.errs.add(ptr+"/name", fmt.Sprintf("duplicate step name %q (also /step_templates/%d)", *d.Name, first))
			continue
		}
		if *d.Name != "" {
			index[*d.Name] = i
		}
	}
	v.dependencies(doc.StepTemplates, index, origins)

	// Overlays: each is validated merged over the steps, so a mistake in
	// any environment is caught whichever environment this replica runs.
	steps := base
	for _, name := range sortedKeys(doc.Environments) {
		envDoc := doc.Environments[name]
		merged := v.environment(name, envDoc, doc.StepTemplates, index, t.Defaults)
		if name == env {
			steps = merged
			t.Environment = env
		}
		t.Environments = append(t.Environments, name)
	}
	t.StepTemplates = steps

	canonical, err := json.Marshal(doc)
	if err != nil {
		v.errs.add("", "the template cannot be encoded: "+err.Error())
		return nil
	}
	sum := sha256.Sum256(canonical)
	return &Definition{Template: t, Canonical: canonical, ContentHash: hex.EncodeToString(sum[:]), baseSteps: base, schema: schema}
}

func (v *validator) name(ptr, s string) string {
	switch {
	case s == "":
		v.errs.add(ptr, "is required")
	case len(s) > maxNameLength:
		v.errs.add(ptr, fmt.Sprintf("must be at most %d characters", maxNameLength))
	case !namePattern.MatchString(s):
		v.errs.add(ptr, fmt.Sprintf("must match [a-z0-9_]+ (lower-case letters, digits and underscores), got %q", s))
	}
	return s
}

func (v *validator) defaults(d *docDefaults) Defaults {
	out := Defaults{
		RetryLimit: DefaultRetryLimit,
		Timeout:    Duration(DefaultTimeout),
		Backoff:    Backoff{Base: Duration(DefaultBackoffBase), Max: Duration(DefaultBackoffMax)},
	}
	if d == nil {
		return out
	}
	if d.RetryLimit != nil {
		out.RetryLimit = v.retryLimit("/defaults/retry_limit", *d.RetryLimit)
	}
	if d.Timeout != nil {
		out.Timeout = v.duration("/defaults/timeout", d.Timeout)
	}
	out.Backoff = v.backoff(func(f string) (string, bool) { return "/defaults/backoff/" + f, true }, d.Backoff, out.Backoff)
	return out
}

func (v *validator) retryLimit(ptr string, n int) int {
	if n < 1 {
		v.errs.add(ptr, fmt.Sprintf("must be at least 1 (it counts every attempt, the first included), got %d", n))
	}
	return n
}

// duration parses a positive duration and rewrites it in its canonical spelling.
func (v *validator) duration(ptr string, s *string) Duration {
	d, err := time.ParseDuration(*s)
	switch {
	case err != nil:
		v.errs.add(ptr, fmt.Sprintf("must be a Go duration such as 200ms, 30s or 5m, got %q", *s))
		return 0
	case d <= 0:
		v.errs.add(ptr, fmt.Sprintf("must be above zero, got %q", *s))
		return 0
	}
	*s = d.String()
	return Duration(d)
}

// backoff applies b over inherited; at maps "base"/"max" to pointers.
func (v *validator) backoff(at pointerFunc, b *docBackoff, inherited Backoff) Backoff {
	out := inherited
	if b == nil {
		return out
	}
	if b.Base != nil {
		if p, ok := at("base"); ok {
			out.Base = v.duration(p, b.Base)
		} else {
			out.Base = quietDuration(*b.Base)
		}
	}
	if b.Max != nil {
		if p, ok := at("max"); ok {
			out.Max = v.duration(p, b.Max)
		} else {
			out.Max = quietDuration(*b.Max)
		}
	}
	if out.Base > 0 && out.Max > 0 && out.Base > out.Max {
		p, ok := at("max")
		if b.Max == nil {
			p, ok = at("base")
		}
		if ok {
			v.errs.add(p, fmt.Sprintf("backoff max %s is below base %s", out.Max, out.Base))
		}
	}
	return out
}

func quietDuration(s string) Duration {
	d, _ := time.ParseDuration(s)
	return Duration(d)
}

// pointerFunc maps a step field to the pointer its errors are reported at;
// false means the field's errors were reported elsewhere already.
type pointerFunc func(field string) (string, bool)

// step validates one step (merged with an overlay, for environments) and
// returns its effective settings.
func (v *validator) step(d *docStep, defaults Defaults, at pointerFunc) StepTemplate {
	report := func(field, msg string) {
		if p, ok := at(field); ok {
			v.errs.add(p, msg)
		}
	}
	s := StepTemplate{
		Retryable:       true,
		RetryLimit:      defaults.RetryLimit,
		Timeout:         defaults.Timeout,
		Backoff:         defaults.Backoff,
		Description:     deref(d.Description),
		HandlerClass:    deref(d.HandlerClass),
		DependentSystem: deref(d.DependentSystem),
		Inputs:          d.Inputs,
		CustomEvents:    d.CustomEvents,
		DependsOn:       slices.Clone(d.DependsOnSteps),
	}
	if s.DependsOn == nil {
		s.DependsOn = []string{}
	}
	if d.Name == nil {
		report("name", "is required")
	} else if p, ok := at("name"); ok {
		s.Name = v.name(p, *d.Name)
	} else {
		s.Name = *d.Name
	}

	if p, ok := at("handler_config"); ok {
		v.object(p, d.HandlerConfig)
	}
	kindConfig := d.HandlerConfig
	if timeout, has, err := timeoutSeconds(d.HandlerConfig); err != nil {
		report("handler_config", err.Error())
	} else if has {
		s.Timeout = timeout
		kindConfig = withoutKey(d.HandlerConfig, timeoutSecondsKey)
	}

	switch {
	case d.Handler != nil && strings.HasPrefix(*d.Handler, RemotePrefix):
		// Run by remote workers claiming from the queue, which get the
		// config as written.
		s.Handler = *d.Handler
		s.HandlerConfig = d.HandlerConfig
		if err := ValidateQueue(*d.Handler); err != nil {
			report("handler", err.Error())
		}
	case d.Handler != nil && *d.Handler != "":
		s.Handler = *d.Handler
		s.HandlerConfig = kindConfig
		kind, ok := v.kinds.Lookup(*d.Handler)
		if !ok {
			report("handler", fmt.Sprintf("unknown handler kind %q; known kinds: %s", *d.Handler, strings.Join(v.kinds.Names(), ", ")))
			break
		}
		if err := kind.ValidateConfig(kindConfig); err != nil {
			field := "handler_config"
			if _, ok := at(field); !ok {
				field = "handler" // an overlay changed the kind, not the config
			}
			report(field, fmt.Sprintf("rejected by handler kind %q: %v", *d.Handler, err))
		}
		if sr, ok := kind.(handler.StepReferencer); ok {
			for _, ref := range sr.StepReferences(kindConfig) {
				if !slices.Contains(s.DependsOn, ref) {
					report("handler_config", fmt.Sprintf("reads .steps.%s, which is not a parent of this step: its templates see the results of the steps it depends on only (depends_on: [%s])",
						ref, strings.Join(s.DependsOn, ", ")))
				}
			}
		}
	case d.HandlerClass != nil && *d.HandlerClass != "":
		// A Tasker step: its Ruby handler becomes a remote worker, which
		// gets the config as written.
		s.Handler = RemotePrefix + *d.HandlerClass
		s.HandlerConfig = d.HandlerConfig
	default:
		report("handler", "is required: name a handler kind (or, as in Tasker, a handler_class run by remote workers)")
	}

	if d.Retryable != nil {
		s.Retryable = *d.Retryable
	}
	if d.RetryLimit != nil {
		if p, ok := at("default_retry_limit"); ok {
			s.RetryLimit = v.retryLimit(p, *d.RetryLimit)
		} else {
			s.RetryLimit = *d.RetryLimit
		}
	}
	if d.Timeout != nil {
		if p, ok := at("timeout"); ok {
			s.Timeout = v.duration(p, d.Timeout)
		} else {
			s.Timeout = quietDuration(*d.Timeout)
		}
	}
	s.Backoff = v.backoff(func(f string) (string, bool) {
		p, ok := at("backoff")
		return p + "/" + f, ok
	}, d.Backoff, defaults.Backoff)
	if d.Skippable != nil {
		s.Skippable = *d.Skippable
	}
	if p, ok := at("concurrency"); ok {
		s.Concurrency = v.concurrency(p, d.Concurrency)
	} else if d.Concurrency != nil {
		s.Concurrency = (&validator{errs: &errorList{}}).concurrency("", d.Concurrency)
	}
	if p, ok := at("rate_limit"); ok {
		s.RateLimit = v.rateLimit(p, d.RateLimit)
	} else if d.RateLimit != nil {
		s.RateLimit = (&validator{errs: &errorList{}}).rateLimit("", d.RateLimit)
	}
	if p, ok := at("custom_events"); ok {
		v.customEvents(p, d.CustomEvents)
	}
	return s
}

// timeoutSeconds reads Tasker's handler_config.timeout_seconds.
func timeoutSeconds(config json.RawMessage) (Duration, bool, error) {
	var m map[string]json.RawMessage
	if len(config) == 0 || json.Unmarshal(config, &m) != nil {
		return 0, false, nil
	}
	raw, ok := m[timeoutSecondsKey]
	if !ok {
		return 0, false, nil
	}
	var secs float64
	if err := json.Unmarshal(raw, &secs); err != nil || secs <= 0 || math.IsInf(secs, 0) || secs > math.MaxInt64/float64(time.Second) {
		return 0, true, fmt.Errorf("timeout_seconds must be a number of seconds above zero, got %s", raw)
	}
	return Duration(time.Duration(secs * float64(time.Second))), true, nil
}

func withoutKey(config json.RawMessage, key string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(config, &m) != nil {
		return config
	}
	delete(m, key)
	if len(m) == 0 {
		return nil
	}
	b, _ := json.Marshal(m)
	return b
}

// object reports raw JSON that is present but not an object.
func (v *validator) object(ptr string, raw json.RawMessage) {
	if len(raw) > 0 && raw[0] != '{' && !bytes.Equal(raw, []byte("null")) {
		v.errs.add(ptr, "must be an object")
	}
}

// customEvents checks Tasker's custom_events: a list of {name, description}.
func (v *validator) customEvents(ptr string, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	var events []map[string]any
	if err := json.Unmarshal(raw, &events); err != nil {
		v.errs.add(ptr, "must be a list of events, each {name, description}")
		return
	}
	for i, e := range events {
		if name, ok := e["name"].(string); !ok || name == "" {
			v.errs.add(ptr+"/"+strconv.Itoa(i)+"/name", "is required: a custom event needs a name")
		}
	}
}

// foldDependencies merges depends_on_step into depends_on_steps, keeping
// the order written and dropping repeats. It returns, for each folded
// entry, the pointer where the document wrote it.
func foldDependencies(d *docStep, ptr string) []string {
	var deps, origins []string
	if d.DependsOnStep != nil && *d.DependsOnStep != "" {
		deps = append(deps, *d.DependsOnStep)
		origins = append(origins, ptr+"/depends_on_step")
	}
	for k, dep := range d.DependsOnSteps {
		if !slices.Contains(deps, dep) {
			deps = append(deps, dep)
			origins = append(origins, ptr+"/depends_on_steps/"+strconv.Itoa(k))
		}
	}
	d.DependsOnStep, d.DependsOnSteps = nil, deps
	return origins
}

// canonicalStep rewrites a step's embedded JSON in one spelling.
func canonicalStep(d *docStep) {
	d.HandlerConfig = canonicalJSON(d.HandlerConfig)
	d.Inputs = canonicalJSON(d.Inputs)
	d.CustomEvents = canonicalJSON(d.CustomEvents)
}

// dependencies reports unknown dependencies and cycles, at the entries as
// written (origins: depends_on_step or depends_on_steps/N).
func (v *validator) dependencies(steps []docStep, index map[string]int, origins [][]string) {
	parents := make([][]int, len(steps))
	for i := range steps {
		for j, dep := range steps[i].DependsOnSteps {
			k, ok := index[dep]
			if !ok {
				v.errs.add(origins[i][j], fmt.Sprintf("depends on unknown step %q", dep))
				continue
			}
			parents[i] = append(parents[i], k)
		}
	}
	for _, cycle := range findCycles(parents) {
		names := make([]string, len(cycle)+1)
		for i, n := range cycle {
			names[i] = deref(steps[n].Name)
		}
		names[len(cycle)] = names[0]
		// The edge that closes the cycle: the first step depends on the last.
		first, last := cycle[0], cycle[len(cycle)-1]
		j := slices.Index(steps[first].DependsOnSteps, deref(steps[last].Name))
		v.errs.add(origins[first][j], "dependency cycle: "+strings.Join(names, " → "))
	}
}

// environment validates one overlay and returns the steps with it applied.
func (v *validator) environment(env string, e docEnvironment, steps []docStep, index map[string]int, defaults Defaults) []StepTemplate {
	prefix := "/environments/" + escapePointer(env) + "/step_templates"
	overlays := map[int]int{} // step index → overlay index
	for j := range e.StepTemplates {
		o := &e.StepTemplates[j]
		ptr := prefix + "/" + strconv.Itoa(j)
		canonicalStep(o)
		if o.DependsOnStep != nil || o.DependsOnSteps != nil {
			p := ptr + "/depends_on_steps"
			if o.DependsOnStep != nil {
				p = ptr + "/depends_on_step"
			}
			v.errs.add(p, "an environment cannot change a step's dependencies")
		}
		if o.Name == nil || *o.Name == "" {
			v.errs.add(ptr+"/name", "is required: name the step this overlay changes")
			continue
		}
		i, ok := index[*o.Name]
		if !ok {
			v.errs.add(ptr+"/name", fmt.Sprintf("environment %q names unknown step %q", env, *o.Name))
			continue
		}
		if prev, dup := overlays[i]; dup {
			v.errs.add(ptr+"/name", fmt.Sprintf("step %q is overlaid twice in environment %q (also %s/%d)", *o.Name, env, prefix, prev))
			continue
		}
		overlays[i] = j
	}
	out := make([]StepTemplate, len(steps))
	for i := range steps {
		j, ok := overlays[i]
		if !ok {
			// Not overlaid: the same as the base step, whose errors were reported.
			out[i] = v.quiet(func() StepTemplate { return v.step(&steps[i], defaults, silent) })
			continue
		}
		o := &e.StepTemplates[j]
		merged := mergeStep(steps[i], *o)
		ptr := prefix + "/" + strconv.Itoa(j)
		out[i] = v.step(&merged, defaults, func(field string) (string, bool) {
			if overlaySets(o, field) {
				return ptr + "/" + field, true
			}
			return "", false
		})
	}
	return out
}

func silent(string) (string, bool) { return "", false }

// quiet runs fn without recording its errors.
func (v *validator) quiet(fn func() StepTemplate) StepTemplate {
	saved := v.errs
	v.errs = &errorList{}
	defer func() { v.errs = saved }()
	return fn()
}

// mergeStep lays an overlay over a step: fields the overlay sets replace
// the step's, except handler_config and inputs, which are merged as a JSON
// Merge Patch (RFC 7396: objects merge key by key, null removes a key).
func mergeStep(base, o docStep) docStep {
	m := base
	m.DependsOnSteps = slices.Clone(base.DependsOnSteps)
	set := func(dst **string, src *string) {
		if src != nil {
			*dst = src
		}
	}
	set(&m.Handler, o.Handler)
	set(&m.Timeout, o.Timeout)
	set(&m.Description, o.Description)
	set(&m.HandlerClass, o.HandlerClass)
	set(&m.DependentSystem, o.DependentSystem)
	if o.Retryable != nil {
		m.Retryable = o.Retryable
	}
	if o.RetryLimit != nil {
		m.RetryLimit = o.RetryLimit
	}
	if o.Skippable != nil {
		m.Skippable = o.Skippable
	}
	if o.Backoff != nil {
		b := docBackoff{}
		if base.Backoff != nil {
			b = *base.Backoff
		}
		set(&b.Base, o.Backoff.Base)
		set(&b.Max, o.Backoff.Max)
		m.Backoff = &b
	}
	if o.CustomEvents != nil {
		m.CustomEvents = o.CustomEvents
	}
	if o.Concurrency != nil {
		m.Concurrency = o.Concurrency
	}
	if o.RateLimit != nil {
		m.RateLimit = o.RateLimit
	}
	if o.HandlerConfig != nil {
		m.HandlerConfig = mergePatch(base.HandlerConfig, o.HandlerConfig)
	}
	if o.Inputs != nil {
		m.Inputs = mergePatch(base.Inputs, o.Inputs)
	}
	return m
}

// overlaySets reports whether an overlay sets a step field.
func overlaySets(o *docStep, field string) bool {
	switch field {
	case "name":
		return false // the overlay's name only selects the step
	case "handler":
		return o.Handler != nil
	case "handler_config":
		return o.HandlerConfig != nil
	case "default_retry_limit":
		return o.RetryLimit != nil
	case "timeout":
		return o.Timeout != nil
	case "backoff":
		return o.Backoff != nil
	case "custom_events":
		return o.CustomEvents != nil
	case "concurrency":
		return o.Concurrency != nil
	case "rate_limit":
		return o.RateLimit != nil
	}
	return false
}

// mergePatch applies an RFC 7396 merge patch.
func mergePatch(target, patch json.RawMessage) json.RawMessage {
	var t, p any
	_ = json.Unmarshal(target, &t)
	if err := json.Unmarshal(patch, &p); err != nil {
		return patch
	}
	b, err := json.Marshal(applyPatch(t, p))
	if err != nil || bytes.Equal(b, []byte("null")) {
		return nil
	}
	return b
}

func applyPatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	out := make(map[string]any, len(t))
	for k, val := range t {
		out[k] = val
	}
	for k, val := range p {
		if val == nil {
			delete(out, k)
			continue
		}
		out[k] = applyPatch(out[k], val)
	}
	return out
}

// canonicalJSON rewrites a JSON value compactly with sorted keys; null and
// absent are the same (nil).
func canonicalJSON(raw json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw
	}
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return b
}

func orDefault(s *string, def string) *string {
	if s == nil || *s == "" {
		return &def
	}
	return s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
