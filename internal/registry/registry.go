// Package registry holds task templates: it parses and validates them
// (YAML or JSON, Tasker's format), persists them in PostgreSQL so every
// replica sees the same set, and serves them to the engine and the
// discovery API from an in-memory cache that follows the database through
// LISTEN/NOTIFY, with polling as a fallback.
//
// A registered version is immutable: replacing it retires its row and
// inserts a new one, so tasks that already use a version keep running
// exactly what they were created with.
package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/notifier"
	"github.com/taskerd/taskerd/internal/store"
)

// DefaultPollInterval is how often the registry re-reads the database when
// no notification arrives; notifications make changes visible sooner.
const DefaultPollInterval = 5 * time.Second

// Log keys.
const (
	logKeyComponent = "component"
	logKeyError     = "error"
	logKeyTemplate  = "template"
	logKeyFile      = "file"
	logKeyID        = "named_task_id"
	logKeyOutcome   = "outcome"
	logKeySource    = "source"
	componentName   = "registry"
)

// Config configures a Registry.
type Config struct {
	// Store persists templates; required.
	Store *store.Store
	// Kinds validates handler kinds and their configs; required.
	Kinds *handler.Kinds
	// Env selects the environments overlay this replica applies (TASKER_ENV).
	Env string
	// Notifier, when set, delivers other replicas' registrations at once;
	// without it the registry only polls.
	Notifier *notifier.Notifier
	// PollInterval is the fallback re-read period; default 5 s.
	PollInterval time.Duration
	// TemplatesDir, when set, is a folder of template files registered at
	// Start and again on Reload (TASKER_TEMPLATES_DIR).
	TemplatesDir string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// OnChange, when set, hears of every template this replica registers,
	// deletes or refuses as invalid (the handler.* events). It must not block.
	OnChange func(ctx context.Context, c Change)
}

// Change is a registration, deletion or refusal made on this replica.
type Change struct {
	// Kind is "registered", "unregistered" or "validation_failed".
	Kind                     string
	Namespace, Name, Version string
	// Outcome is "created" or "replaced" for a registration.
	Outcome string
	// Source is "api" or the template file's path.
	Source string
	// Errors lists why a template was refused.
	Errors []FieldError
}

// Kinds of Change.
const (
	ChangeRegistered       = "registered"
	ChangeUnregistered     = "unregistered"
	ChangeValidationFailed = "validation_failed"
)

func (r *Registry) changed(ctx context.Context, c Change) {
	if r.onChange != nil {
		r.onChange(ctx, c)
	}
}

// Registry is the thread-safe set of registered templates.
type Registry struct {
	store  *store.Store
	kinds  *handler.Kinds
	env    string
	notes  *notifier.Notifier
	poll   time.Duration
	dir    string
	logger *slog.Logger

	onChange func(context.Context, Change)

	syncMu sync.Mutex // one sync at a time

	mu      sync.RWMutex
	byID    map[int64]*Registered
	live    map[versionKey]int64
	failed  map[int64]string // rows this replica cannot use, with why (logged once)
	synced  bool
	syncErr error
	files   *FileReport
	filesMu sync.Mutex // one directory load at a time

	reload chan struct{}

	lifeMu sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

type versionKey struct{ namespace, name, version string }

// Registered is one registered version as the engine uses it.
type Registered struct {
	// ID is named_tasks.named_task_id.
	ID int64
	// Template has THIS replica's environment overlay applied.
	Template *Template
	// StepIDs maps step names to named_steps.named_step_id.
	StepIDs     map[string]int64
	ContentHash string
	// Deleted is true once the version was deleted or replaced: existing
	// tasks keep it, new tasks cannot use it.
	Deleted bool

	schema *contextSchema
}

// ValidateContext validates a task context against the template's schema
// (compiled once and cached). It returns nil when the context is valid or
// the template has no schema.
func (r *Registered) ValidateContext(doc json.RawMessage) []FieldError {
	if r.Template == nil || len(r.Template.Schema) == 0 {
		return nil
	}
	cs := r.schema
	if cs == nil {
		cs = &contextSchema{raw: r.Template.Schema} // built by hand: compiled per call
	}
	s, err := cs.compiled()
	if err != nil {
		return []FieldError{{Message: "the template's schema does not compile: " + err.Error()}}
	}
	return validateDocument(s, doc)
}

// New validates cfg. The registry reads nothing until used or started.
func New(cfg Config) (*Registry, error) {
	if cfg.Store == nil {
		return nil, errors.New("registry: Store is required")
	}
	if cfg.Kinds == nil {
		return nil, errors.New("registry: Kinds is required")
	}
	return &Registry{
		store:  cfg.Store,
		kinds:  cfg.Kinds,
		env:    cfg.Env,
		notes:  cfg.Notifier,
		poll:   cmp.Or(cfg.PollInterval, DefaultPollInterval),
		dir:    cfg.TemplatesDir,
		logger: cmp.Or(cfg.Logger, slog.Default()).With(slog.String(logKeyComponent, componentName)),
		byID:   map[int64]*Registered{},
		live:   map[versionKey]int64{},
		failed: map[int64]string{},
		reload: make(chan struct{}, 1),

		onChange: cfg.OnChange,
	}, nil
}

// Parse reads and validates a template with the registry's kinds and
// environment, without registering it.
func (r *Registry) Parse(data []byte, format Format) (*Definition, error) {
	def, err := Parse(data, format, ParseConfig{Kinds: r.kinds, Env: r.env})
	var invalid *ValidationError
	if errors.As(err, &invalid) {
		r.changed(context.Background(), Change{Kind: ChangeValidationFailed, Errors: invalid.Errors})
	}
	return def, err
}

// Start loads the registry and the templates folder in the background and
// follows other replicas' changes; it returns at once. A database that is
// down is retried: Check reports the registry unready meanwhile.
func (r *Registry) Start(ctx context.Context) error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.cancel != nil {
		return nil
	}
	var notes <-chan string
	unsubscribe := func() {}
	if r.notes != nil {
		notes, unsubscribe = r.notes.Subscribe(r.store.RegistryChannel())
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		defer unsubscribe()
		r.run(ctx, notes)
	}()
	return nil
}

// Stop ends the background work and waits for it. Safe twice and before Start.
func (r *Registry) Stop(ctx context.Context) error {
	r.lifeMu.Lock()
	cancel, done := r.cancel, r.done
	r.lifeMu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reload asks the background loop to register the templates folder again
// (SIGHUP). It returns at once.
func (r *Registry) Reload() {
	select {
	case r.reload <- struct{}{}:
	default:
	}
}

func (r *Registry) run(ctx context.Context, notes <-chan string) {
	filesPending := r.dir != ""
	var retry time.Duration
	for {
		err := r.Sync(ctx)
		if err == nil && filesPending {
			if _, err = r.LoadDir(ctx); err == nil {
				filesPending = false
			}
		}
		wait := r.poll
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			retry = min(max(2*retry, 250*time.Millisecond), r.poll)
			wait = retry
			r.logger.WarnContext(ctx, "template registry: database read failed; retrying",
				slog.String(logKeyError, err.Error()), slog.Duration("retry_in", wait))
		} else {
			retry = 0
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-notes:
			// A burst of notifications needs one sync.
			for len(notes) > 0 {
				<-notes
			}
		case <-r.reload:
			filesPending = r.dir != ""
		case <-timer.C:
		}
		timer.Stop()
	}
}

// Sync re-reads the live templates from the database into the cache.
func (r *Registry) Sync(ctx context.Context) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	list, err := r.store.LiveTemplates(ctx)
	if err != nil {
		r.mu.Lock()
		r.syncErr = err
		r.mu.Unlock()
		return fmt.Errorf("registry: sync: %w", err)
	}
	r.mu.RLock()
	var missing []int64
	for _, t := range list {
		if _, ok := r.byID[t.ID]; !ok {
			if _, bad := r.failed[t.ID]; !bad {
				missing = append(missing, t.ID)
			}
		}
	}
	r.mu.RUnlock()
	loaded, err := r.loadRows(ctx, missing)
	if err != nil {
		return fmt.Errorf("registry: sync: %w", err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, reg := range loaded {
		r.byID[reg.ID] = reg
	}
	live := make(map[versionKey]int64, len(list))
	for _, t := range list {
		live[versionKey{t.Namespace, t.Name, t.Version}] = t.ID
	}
	// Rows that left the live set were deleted or replaced elsewhere.
	for _, id := range r.live {
		if reg, ok := r.byID[id]; ok && !reg.Deleted && !containsID(live, id) {
			retired := *reg
			retired.Deleted = true
			r.byID[id] = &retired
		}
	}
	r.live = live
	r.synced, r.syncErr = true, nil
	return nil
}

func containsID(m map[versionKey]int64, id int64) bool {
	for _, v := range m {
		if v == id {
			return true
		}
	}
	return false
}

// loadRows reads and parses rows. A row this replica cannot parse (a kind
// it lacks, say) is logged once and left out.
func (r *Registry) loadRows(ctx context.Context, ids []int64) ([]*Registered, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := r.store.TemplatesByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*Registered, 0, len(rows))
	for _, row := range rows {
		reg, err := r.registered(row)
		if err != nil {
			r.mu.Lock()
			_, logged := r.failed[row.ID]
			r.failed[row.ID] = err.Error()
			r.mu.Unlock()
			if !logged {
				r.logger.ErrorContext(ctx, "template registry: a registered template cannot be used on this replica",
					slog.Int64(logKeyID, row.ID), slog.String(logKeyTemplate, FullName(row.Namespace, row.Name, row.Version)),
					slog.String(logKeyError, err.Error()))
			}
			continue
		}
		out = append(out, reg)
	}
	return out, nil
}

func (r *Registry) registered(row store.TemplateRow) (*Registered, error) {
	def, err := r.Parse(row.Document, FormatJSON)
	if err != nil {
		return nil, err
	}
	return &Registered{
		ID:          row.ID,
		Template:    def.Template,
		StepIDs:     row.StepIDs,
		ContentHash: row.ContentHash,
		Deleted:     row.DeletedAt != nil,
		schema:      def.schema,
	}, nil
}

// apply records freshly read rows in the cache.
func (r *Registry) apply(regs []*Registered) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, reg := range regs {
		r.byID[reg.ID] = reg
		k := versionKey{reg.Template.NamespaceName, reg.Template.Name, reg.Template.Version}
		switch {
		case !reg.Deleted:
			r.live[k] = reg.ID
		case r.live[k] == reg.ID:
			delete(r.live, k)
		}
	}
}

// Outcome says what a registration did.
type Outcome string

// Registration outcomes.
const (
	Created   Outcome = "created"
	Unchanged Outcome = "unchanged"
	Replaced  Outcome = "replaced"
)

// RegisterOptions tunes a registration.
type RegisterOptions struct {
	// Replace supersedes a different template registered at the same
	// version (Tasker's replace: true). Tasks already created keep the
	// version they were created with.
	Replace bool
	// Source names where the template came from, for the log ("api", a file).
	Source string
}

// RegisterResult is a successful registration.
type RegisterResult struct {
	Outcome    Outcome
	Registered *Registered
}

// Register validates a template and registers it. Registering the same
// content again is a no-op (Unchanged). A different template at the same
// namespace/name/version is a *ConflictError (errors.Is ErrConflict)
// unless opts.Replace. An invalid template is a *ValidationError.
func (r *Registry) Register(ctx context.Context, data []byte, format Format, opts RegisterOptions) (*RegisterResult, error) {
	def, err := r.Parse(data, format)
	if err != nil {
		return nil, err
	}
	return r.RegisterDefinition(ctx, def, opts)
}

// RegisterDefinition registers an already parsed template.
func (r *Registry) RegisterDefinition(ctx context.Context, def *Definition, opts RegisterOptions) (*RegisterResult, error) {
	t := def.Template
	steps := make([]store.NewNamedStep, len(def.baseSteps))
	for i, s := range def.baseSteps {
		steps[i] = store.NewNamedStep{Name: s.Name, Handler: s.Handler, Description: s.Description, HandlerConfig: s.HandlerConfig}
	}
	// Held from the write to the cache update: a Sync that read the live
	// list before this commit must not overwrite the cache after it (it
	// would bring back the replaced version and retire the new one).
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	res, err := r.store.RegisterTemplate(ctx, store.NewTemplate{
		Namespace: t.NamespaceName, Name: t.Name, Version: t.Version, Description: t.Description,
		Document: def.Canonical, ContentHash: def.ContentHash, Steps: steps, Replace: opts.Replace,
	})
	if err != nil {
		return nil, fmt.Errorf("registry: register %s: %w", t.FullName(), err)
	}
	if res.Outcome == store.RegisterConflict {
		return nil, &ConflictError{Namespace: t.NamespaceName, Name: t.Name, Version: t.Version, RegisteredHash: res.ContentHash, NewHash: def.ContentHash}
	}
	ids := []int64{res.ID}
	if res.ReplacedID != 0 {
		ids = append(ids, res.ReplacedID)
	}
	regs, err := r.loadRows(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("registry: reload %s: %w", t.FullName(), err)
	}
	r.apply(regs)
	reg, err := r.cached(res.ID)
	if err != nil {
		return nil, err
	}
	if res.Outcome != store.RegisterUnchanged {
		r.logger.InfoContext(ctx, "template registered", slog.String(logKeyTemplate, t.FullName()),
			slog.String(logKeyOutcome, string(res.Outcome)), slog.Int64(logKeyID, res.ID), slog.String(logKeySource, opts.Source))
		r.changed(ctx, Change{Kind: ChangeRegistered, Namespace: t.NamespaceName, Name: t.Name, Version: t.Version,
			Outcome: string(res.Outcome), Source: opts.Source})
	}
	return &RegisterResult{Outcome: Outcome(res.Outcome), Registered: reg}, nil
}

func (r *Registry) cached(id int64) (*Registered, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if reg, ok := r.byID[id]; ok {
		return reg, nil
	}
	if why, bad := r.failed[id]; bad {
		return nil, fmt.Errorf("registry: template %d cannot be used on this replica: %s", id, why)
	}
	return nil, fmt.Errorf("%w: id %d", ErrNotFound, id)
}

// Delete soft-deletes a live version: new tasks can no longer use it,
// existing tasks keep it. While unfinished tasks use it the answer is
// ErrInUse, unless force.
func (r *Registry) Delete(ctx context.Context, namespace, name, version string, force bool) error {
	full := FullName(namespace, name, version)
	r.syncMu.Lock() // as in RegisterDefinition: no stale Sync may undo this
	defer r.syncMu.Unlock()
	res, err := r.store.DeleteTemplate(ctx, namespace, name, version, force)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, full)
	}
	if err != nil {
		return fmt.Errorf("registry: delete %s: %w", full, err)
	}
	if !res.Deleted {
		return fmt.Errorf("%w: %d unfinished tasks use %s; let them finish or cancel them, or delete with force=true",
			ErrInUse, res.UnfinishedTasks, full)
	}
	regs, err := r.loadRows(ctx, []int64{res.ID})
	if err != nil {
		return fmt.Errorf("registry: reload %s: %w", full, err)
	}
	r.apply(regs)
	r.logger.InfoContext(ctx, "template deleted", slog.String(logKeyTemplate, full), slog.Int64(logKeyID, res.ID),
		slog.Bool("force", force), slog.Int64("unfinished_tasks", res.UnfinishedTasks))
	r.changed(ctx, Change{Kind: ChangeUnregistered, Namespace: namespace, Name: name, Version: version})
	return nil
}

// Resolve finds the live version of a template; version "" means the
// highest semantic version that is not deleted. A version the cache does
// not know yet is looked up in the database before ErrNotFound.
func (r *Registry) Resolve(ctx context.Context, namespace, name, version string) (*Registered, error) {
	if reg := r.resolveCached(namespace, name, version); reg != nil {
		return reg, nil
	}
	// Another replica may have registered it a moment ago.
	if err := r.Sync(ctx); err != nil {
		return nil, err
	}
	if reg := r.resolveCached(namespace, name, version); reg != nil {
		return reg, nil
	}
	if version == "" {
		return nil, fmt.Errorf("%w: %s.%s (no live version)", ErrNotFound, namespace, name)
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, FullName(namespace, name, version))
}

func (r *Registry) resolveCached(namespace, name, version string) *Registered {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if version != "" {
		if id, ok := r.live[versionKey{namespace, name, version}]; ok {
			return r.byID[id]
		}
		return nil
	}
	var best *Registered
	var bestV *semver.Version
	for k, id := range r.live {
		if k.namespace != namespace || k.name != name {
			continue
		}
		v, err := semver.NewVersion(k.version)
		if err != nil {
			continue
		}
		if bestV == nil || v.GreaterThan(bestV) {
			best, bestV = r.byID[id], v
		}
	}
	return best
}

// ByID returns a registered version by named_task_id, deleted or not
// (tasks keep the version they were created with).
func (r *Registry) ByID(ctx context.Context, id int64) (*Registered, error) {
	if reg, err := r.cached(id); err == nil || !errors.Is(err, ErrNotFound) {
		return reg, err
	}
	regs, err := r.loadRows(ctx, []int64{id})
	if err != nil {
		return nil, fmt.Errorf("registry: load template %d: %w", id, err)
	}
	r.mu.Lock()
	for _, reg := range regs {
		r.byID[reg.ID] = reg
	}
	r.mu.Unlock()
	return r.cached(id)
}

// NamespaceSummary is one namespace in discovery.
type NamespaceSummary struct {
	Name string `json:"name"`
	// HandlerCount counts the templates (names) with a live version.
	HandlerCount int `json:"handler_count"`
}

// Namespaces lists the namespaces that have live templates, by name.
func (r *Registry) Namespaces() []NamespaceSummary {
	r.mu.RLock()
	names := map[string]map[string]bool{}
	for k := range r.live {
		if names[k.namespace] == nil {
			names[k.namespace] = map[string]bool{}
		}
		names[k.namespace][k.name] = true
	}
	r.mu.RUnlock()
	out := make([]NamespaceSummary, 0, len(names))
	for _, ns := range sortedKeys(names) {
		out = append(out, NamespaceSummary{Name: ns, HandlerCount: len(names[ns])})
	}
	return out
}

// HandlerSummary is one template (all its live versions) in discovery.
type HandlerSummary struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Versions are the live versions, lowest first.
	Versions      []string `json:"versions"`
	LatestVersion string   `json:"latest_version"`
}

// Handlers lists a namespace's templates by name; ErrNotFound for a
// namespace without live templates.
func (r *Registry) Handlers(namespace string) ([]HandlerSummary, error) {
	r.mu.RLock()
	versions := map[string][]*semver.Version{}
	for k := range r.live {
		if k.namespace == namespace {
			if v, err := semver.NewVersion(k.version); err == nil {
				versions[k.name] = append(versions[k.name], v)
			}
		}
	}
	r.mu.RUnlock()
	if len(versions) == 0 {
		return nil, fmt.Errorf("%w: namespace %q has no templates", ErrNotFound, namespace)
	}
	out := make([]HandlerSummary, 0, len(versions))
	for _, name := range sortedKeys(versions) {
		vs := versions[name]
		slices.SortFunc(vs, func(a, b *semver.Version) int { return a.Compare(b) })
		h := HandlerSummary{Name: name, Namespace: namespace}
		for _, v := range vs {
			h.Versions = append(h.Versions, v.Original())
		}
		h.LatestVersion = h.Versions[len(h.Versions)-1]
		out = append(out, h)
	}
	return out, nil
}

// ErrNotLoaded means the registry has not loaded yet: the replica cannot
// serve templates and is not ready. Other Check errors are problems with
// template files, while the registered versions keep being served.
var ErrNotLoaded = errors.New("template registry not loaded yet")

// Check reports whether the registry is fit to serve, for the readiness
// probe: loaded from the database, and the templates folder registered
// without conflicts or invalid files. Its error names every problem.

func (r *Registry) Check(context.Context) error {
	r.mu.RLock()
	synced, syncErr, files := r.synced, r.syncErr, r.files
	r.mu.RUnlock()
	if !synced {
		if syncErr != nil {
			return fmt.Errorf("%w: %v", ErrNotLoaded, syncErr)
		}
		return ErrNotLoaded
	}
	if r.dir == "" {
		return nil
	}
	if files == nil {
		return fmt.Errorf("%w: templates in %s not registered yet", ErrNotLoaded, r.dir)
	}
	return files.err()
}
