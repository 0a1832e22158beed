package graphql

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/taskerd/taskerd/internal/auth"
	"github.com/taskerd/taskerd/internal/engine"
	"github.com/taskerd/taskerd/internal/graphql/model"
	"github.com/taskerd/taskerd/internal/store"
)

// listTasks is GET /tasks as a Relay connection: the same filters, sorts
// and keyset pages, within the caller's scope in SQL.
func (r *Resolver) listTasks(ctx context.Context, filter *model.TaskFilter, first *int, after *string,
	sortBy *model.TaskSortKey, sortOrder *model.SortOrder) (*model.TaskConnection, error) {
	s, err := r.scope(ctx, &auditNote{perm: auth.TaskIndex})
	if err != nil {
		return nil, err
	}
	limit := 20
	if first != nil {
		limit = *first
	}
	if limit < 1 {
		return nil, badRequest("first must be at least 1")
	}
	limit = min(limit, DefaultMaxPage) // as REST's limit: above 100 is served as 100
	var f store.TaskFilter
	if filter != nil {
		f = store.TaskFilter{
			Namespace: deref(filter.Namespace), Name: deref(filter.Name), Version: deref(filter.Version),
			Initiator: deref(filter.Initiator), SourceSystem: deref(filter.SourceSystem), Tags: filter.Tags,
			CreatedAfter: derefTime(filter.CreatedAfter), CreatedBefore: derefTime(filter.CreatedBefore),
		}
		for _, st := range filter.Statuses {
			f.Statuses = append(f.Statuses, strings.ToLower(string(st)))
		}
		if !f.CreatedAfter.IsZero() && !f.CreatedBefore.IsZero() && !f.CreatedAfter.Before(f.CreatedBefore) {
			return nil, badRequest("createdAfter must be before createdBefore")
		}
	}
	if !s.All() {
		f.Namespaces = append([]string{}, s.Namespaces()...)
	}
	sort := store.SortCreatedAt
	if sortBy != nil {
		sort = store.TaskSort(strings.ToLower(string(*sortBy)))
	}
	desc := sortOrder == nil || *sortOrder == model.SortOrderDesc
	params := store.TaskListParams{Filter: f, Sort: sort, Desc: desc, Limit: limit + 1}
	if after != nil && *after != "" {
		k, err := decodeTaskCursor(*after, sort, desc)
		if err != nil {
			return nil, badRequest("after is not a cursor of this sort: " + err.Error())
		}
		params.After = k
	}
	tasks, err := r.store.ListTasks(ctx, params)
	if err != nil {
		return nil, translate(err)
	}
	out := &model.TaskConnection{Edges: make([]*model.TaskEdge, 0, min(len(tasks), limit)), PageInfo: &model.PageInfo{}}
	if len(tasks) > limit {
		tasks, out.PageInfo.HasNextPage = tasks[:limit], true
	}
	ids := make([]uuid.UUID, 0, len(tasks))
	for i := range tasks {
		c := encodeTaskCursor(&tasks[i], sort, desc)
		out.Edges = append(out.Edges, &model.TaskEdge{Cursor: c, Node: &tasks[i]})
		ids = append(ids, tasks[i].TaskID)
	}
	if n := len(out.Edges); n > 0 {
		out.PageInfo.EndCursor = &out.Edges[n-1].Cursor
	}
	r.requestOf(ctx).loaders.see(ids...)
	return out, nil
}

// taskCursor is a task's position: the sort it was made for and the
// store's keyset key.
type taskCursor struct {
	Sort        store.TaskSort `json:"s"`
	Desc        bool           `json:"d"`
	TaskID      uuid.UUID      `json:"id"`
	CreatedAt   time.Time      `json:"c,omitzero"`
	CompletedAt *time.Time     `json:"f,omitempty"`
	Status      string         `json:"st,omitempty"`
}

func encodeTaskCursor(t *store.Task, sort store.TaskSort, desc bool) string {
	k := store.KeyOf(t, sort)
	raw, _ := json.Marshal(taskCursor{Sort: sort, Desc: desc, TaskID: k.TaskID, CreatedAt: k.CreatedAt,
		CompletedAt: k.CompletedAt, Status: k.Status})
	return base64.RawURLEncoding.EncodeToString(raw)
}

func decodeTaskCursor(s string, sort store.TaskSort, desc bool) (*store.TaskKey, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64url")
	}
	var c taskCursor
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("not a cursor")
	}
	if c.Sort != sort || c.Desc != desc || c.TaskID == uuid.Nil {
		return nil, fmt.Errorf("made for another sort, or incomplete")
	}
	return &store.TaskKey{TaskID: c.TaskID, CreatedAt: c.CreatedAt, CompletedAt: c.CompletedAt, Status: c.Status}, nil
}

// showTask is GET /tasks/{task_id}: the task and its steps in one round trip.
func (r *Resolver) showTask(ctx context.Context, id uuid.UUID) (*store.Task, error) {
	n := &auditNote{perm: auth.TaskShow, resourceID: id.String()}
	s, err := r.scope(ctx, n)
	if err != nil {
		return nil, err
	}
	view, err := r.engine.GetTask(ctx, id, false)
	if err != nil {
		return nil, translate(err)
	}
	n.namespace = view.Task.Namespace
	if err := r.inScope(ctx, s, n); err != nil {
		return nil, err
	}
	r.remember(ctx, view)
	return view.Task, nil
}

// remember primes the loaders with a task read with its steps.
func (r *Resolver) remember(ctx context.Context, view *engine.TaskView) {
	l := r.requestOf(ctx).loaders
	l.see(view.Task.TaskID)
	l.tasks.prime(view.Task.TaskID, *view.Task)
	l.steps.prime(view.Task.TaskID, view.Steps)
}

// showStep is GET …/workflow_steps/{step_id}, addressed by the step's id alone.
func (r *Resolver) showStep(ctx context.Context, id uuid.UUID) (*store.Step, error) {
	return r.authorizeStep(ctx, &auditNote{perm: auth.StepShow}, id)
}

// taskContext redacts the values the template marks x-sensitive unless
// the caller holds tasker.task:show_sensitive, as REST does.
func (r *Resolver) taskContext(ctx context.Context, t *store.Task) (json.RawMessage, error) {
	if err := canShow(ctx, t); err != nil {
		return nil, err
	}
	if len(t.Context) == 0 || principal(ctx).Can(auth.TaskShowSensitive, t.Namespace) {
		return t.Context, nil
	}
	reg, err := r.registry.ByID(ctx, t.NamedTaskID)
	if err != nil {
		return nil, translate(err)
	}
	out, _ := reg.RedactContext(t.Context)
	return out, nil
}

func (r *Resolver) steps(ctx context.Context, t *store.Task) ([]*store.Step, error) {
	if err := canShow(ctx, t); err != nil {
		return nil, err
	}
	steps, _, err := r.requestOf(ctx).loaders.steps.load(ctx, t.TaskID)
	if err != nil {
		return nil, translate(err)
	}
	out := make([]*store.Step, len(steps))
	for i := range steps {
		out[i] = &steps[i]
	}
	return out, nil
}

// parents are a step's parents among its task's steps, by name.
func (r *Resolver) parents(ctx context.Context, st *store.Step) ([]*store.Step, error) {
	out := []*store.Step{}
	if len(st.Parents) == 0 {
		return out, nil
	}
	steps, _, err := r.requestOf(ctx).loaders.steps.load(ctx, st.TaskID)
	if err != nil {
		return nil, translate(err)
	}
	for i := range steps {
		if slices.Contains(st.Parents, steps[i].Name) {
			out = append(out, &steps[i])
		}
	}
	return out, nil
}

func (r *Resolver) taskOf(ctx context.Context, st *store.Step) (*store.Task, error) {
	t, ok, err := r.requestOf(ctx).loaders.tasks.load(ctx, st.TaskID)
	if err != nil {
		return nil, translate(err)
	}
	if !ok {
		return nil, notFound()
	}
	if err := canShow(ctx, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func (r *Resolver) readiness(ctx context.Context, st *store.Step) (*store.StepReadiness, error) {
	byStep, _, err := r.requestOf(ctx).loaders.readiness.load(ctx, st.TaskID)
	if err != nil {
		return nil, translate(err)
	}
	rd, ok := byStep[st.StepID]
	if !ok {
		return nil, nil
	}
	return &rd, nil
}

// createTask is POST /tasks, with the engine's checks shared with REST.
func (r *Resolver) createTask(ctx context.Context, in model.CreateTaskInput) (out *model.CreateTaskPayload, err error) {
	n := &auditNote{perm: auth.TaskCreate}
	if _, err := r.scope(ctx, n); err != nil {
		return nil, err
	}
	defer func() { r.audit(ctx, n, err) }()
	req := engine.CreateTaskRequest{
		Namespace: deref(in.Namespace), Name: in.Name, Version: deref(in.Version), Context: in.Context,
		Initiator: deref(in.Initiator), SourceSystem: deref(in.SourceSystem), Reason: deref(in.Reason),
		Tags: in.Tags, RunAt: in.RunAt, BypassSteps: in.BypassSteps, IdempotencyKey: deref(in.IdempotencyKey),
		CorrelationID: deref(in.CorrelationID),
	}
	if in.Priority != nil {
		req.Priority = *in.Priority
	}
	if problems := engine.PrepareCreateTask(&req); len(problems) > 0 {
		return nil, validationFailed("the task request is not valid", problems)
	}
	n.namespace = req.Namespace
	// The namespace is the caller's own choice, so refusing it leaks
	// nothing: FORBIDDEN, not the NOT_FOUND of an object addressed by id.
	if !principal(ctx).Can(auth.TaskCreate, req.Namespace) {
		return nil, forbidden(fmt.Sprintf("this request needs the permission %s in namespace %q", auth.TaskCreate, req.Namespace))
	}
	if req.CorrelationID == "" || len(req.CorrelationID) > 128 {
		req.CorrelationID = uuid.Must(uuid.NewV7()).String()
	}
	view, created, err := r.engine.CreateTask(ctx, req)
	if err != nil {
		return nil, translate(err)
	}
	n.resourceID = view.Task.TaskID.String()
	if created {
		n.status = http.StatusCreated
	}
	r.remember(ctx, view)
	return &model.CreateTaskPayload{Task: view.Task, Created: created}, nil
}

// updateTask is PATCH /tasks/{task_id}.
func (r *Resolver) updateTask(ctx context.Context, id uuid.UUID, in model.UpdateTaskInput) (_ *store.Task, err error) {
	n := &auditNote{perm: auth.TaskUpdate}
	if err := r.authorizeTask(ctx, n, id); err != nil {
		return nil, err
	}
	defer func() { r.audit(ctx, n, err) }()
	var tags *[]string
	if in.Tags != nil {
		tags = &in.Tags
	}
	if problems := engine.CheckTaskEdit(in.Reason, tags); len(problems) > 0 {
		return nil, validationFailed("the task update is not valid", problems)
	}
	if err := r.store.EditTask(ctx, store.TaskEdit{TaskID: id, Reason: in.Reason, Tags: tags}); err != nil {
		return nil, translate(err)
	}
	return r.reread(ctx, id)
}

// cancelTask is DELETE /tasks/{task_id}.
func (r *Resolver) cancelTask(ctx context.Context, id uuid.UUID) (_ *store.Task, err error) {
	n := &auditNote{perm: auth.TaskCancel}
	if err := r.authorizeTask(ctx, n, id); err != nil {
		return nil, err
	}
	defer func() { r.audit(ctx, n, err) }()
	if err := r.engine.CancelTask(ctx, id, actor(ctx)); err != nil {
		return nil, translate(err)
	}
	return r.reread(ctx, id)
}

// reread answers a task after a mutation, as REST renders it.
func (r *Resolver) reread(ctx context.Context, id uuid.UUID) (*store.Task, error) {
	view, err := r.engine.GetTask(ctx, id, false)
	if err != nil {
		return nil, translate(err)
	}
	r.remember(ctx, view)
	return view.Task, nil
}

// stepOp is one of the manual step actions.
type stepOp int

const (
	stepRetry stepOp = iota
	stepResolve
	stepCancel
)

var stepPerms = map[stepOp]auth.Permission{stepRetry: auth.StepRetry, stepResolve: auth.StepResolve, stepCancel: auth.StepCancel}

// stepAction is POST …/workflow_steps/{step_id}/retry, resolve or cancel.
func (r *Resolver) stepAction(ctx context.Context, op stepOp, id uuid.UUID, results json.RawMessage) (_ *store.Step, err error) {
	n := &auditNote{perm: stepPerms[op]}
	st, err := r.authorizeStep(ctx, n, id)
	if err != nil {
		return nil, err
	}
	defer func() { r.audit(ctx, n, err) }()
	who := actor(ctx)
	switch op {
	case stepRetry:
		err = r.engine.RetryStep(ctx, st.TaskID, id, who)
	case stepResolve:
		err = r.engine.ResolveStep(ctx, st.TaskID, id, results, who)
	case stepCancel:
		err = r.engine.CancelStep(ctx, st.TaskID, id, who)
	}
	if err != nil {
		return nil, translate(err)
	}
	after, _, err := r.engine.GetStep(ctx, st.TaskID, id)
	if err != nil {
		return nil, translate(err)
	}
	return after, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
