package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// TaskSort names an order of the task list.
type TaskSort string

// The orders of the task list. Each is (key, task_id) in one direction.
const (
	SortCreatedAt   TaskSort = "created_at"
	SortCompletedAt TaskSort = "completed_at" // unfinished tasks (no completed_at) come last either way
	SortStatus      TaskSort = "status"
)

// TaskFilter selects tasks; zero fields select everything.
type TaskFilter struct {
	Namespace     string
	Name          string
	Version       string
	Statuses      []string // any of them
	Initiator     string
	SourceSystem  string
	Tags          []string  // all of them
	CreatedAfter  time.Time // strictly after
	CreatedBefore time.Time // strictly before
	// Namespaces, when not nil, keeps only tasks in these namespaces (the
	// caller's permission scope); empty but not nil selects nothing.
	Namespaces []string
}

// TaskKey is the position of a task in a sorted list: its sort key and id.
// A keyset cursor is the TaskKey of the last task of a page.
type TaskKey struct {
	// CreatedAt is the key of SortCreatedAt; CompletedAt of SortCompletedAt
	// (nil: the task had not finished); Status of SortStatus.
	CreatedAt   time.Time
	CompletedAt *time.Time
	Status      string
	TaskID      uuid.UUID
}

// TaskListParams asks for one page of tasks.
type TaskListParams struct {
	Filter TaskFilter
	Sort   TaskSort
	Desc   bool
	// After, when set, resumes strictly after this position (keyset paging).
	After *TaskKey
	// Offset skips rows (Tasker's offset paging); used without After.
	Offset int
	Limit  int
}

// KeyOf returns the position of t in a list sorted by sort.
func KeyOf(t *Task, sort TaskSort) TaskKey {
	k := TaskKey{TaskID: t.TaskID}
	switch sort {
	case SortCompletedAt:
		k.CompletedAt = t.CompletedAt
	case SortStatus:
		k.Status = t.Status
	default:
		k.CreatedAt = t.CreatedAt
	}
	return k
}

//go:embed sql/task_list.sql
var taskListSQLText string

// taskListSQL is task_list.sql with its fixed choices filled in.
var taskListSQL = template.Must(template.New("task_list.sql").Parse(taskListSQLText))

// taskListQuery is what task_list.sql may be filled with; every field
// comes from the switch in listQuery, never from a request.
type taskListQuery struct {
	Key, KeyType, Dir, Cmp string
	After                  bool
}

func listQuery(p TaskListParams) (string, error) {
	q := taskListQuery{Dir: "ASC", Cmp: ">", After: p.After != nil}
	if p.Desc {
		q.Dir, q.Cmp = "DESC", "<"
	}
	switch p.Sort {
	case SortCreatedAt, "":
		q.Key, q.KeyType = "t.created_at", "timestamptz"
	case SortCompletedAt:
		// Unfinished tasks sort as if they completed at the end of time, in
		// either direction, so they come last and the key is never NULL
		// (a row comparison with NULL would lose them).
		q.Key, q.KeyType = "coalesce(t.completed_at, 'infinity'::timestamptz)", "timestamptz"
		if p.Desc {
			q.Key = "coalesce(t.completed_at, '-infinity'::timestamptz)"
		}
	case SortStatus:
		q.Key, q.KeyType = "t.status", "text"
	default:
		return "", fmt.Errorf("list tasks: unknown sort %q", p.Sort)
	}
	var b strings.Builder
	if err := taskListSQL.Execute(&b, q); err != nil {
		return "", fmt.Errorf("list tasks: %w", err)
	}
	return b.String(), nil
}

// ListTasks returns one page of tasks, without their context.
func (s *Store) ListTasks(ctx context.Context, p TaskListParams) ([]Task, error) {
	query, err := listQuery(p)
	if err != nil {
		return nil, err
	}
	f := p.Filter
	args := []any{
		nullable(f.Namespace), nullable(f.Name), nullable(f.Version), nullableSlice(f.Statuses),
		nullable(f.Initiator), nullable(f.SourceSystem), nullableSlice(f.Tags),
		nullableTime(f.CreatedAfter), nullableTime(f.CreatedBefore), p.Limit, p.Offset, scopeArg(f.Namespaces),
	}
	if a := p.After; a != nil {
		var key any
		switch p.Sort {
		case SortCompletedAt:
			ts := pgtype.Timestamptz{Valid: true, InfinityModifier: pgtype.Infinity}
			if p.Desc {
				ts.InfinityModifier = pgtype.NegativeInfinity
			}
			if a.CompletedAt != nil {
				ts = pgtype.Timestamptz{Time: *a.CompletedAt, Valid: true}
			}
			key = ts
		case SortStatus:
			key = a.Status
		default:
			key = a.CreatedAt
		}
		args = append(args, key, a.TaskID)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, translate("list tasks", err)
	}
	tasks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Task, error) {
		var t Task
		err := row.Scan(&t.TaskID, &t.NamedTaskID, &t.Namespace, &t.Name, &t.Version, &t.Status, &t.Initiator,
			&t.SourceSystem, &t.Reason, &t.Tags, &t.IdempotencyKey, &t.Priority, &t.RunAt, &t.CorrelationID,
			&t.TotalSteps, &t.UnfinishedSteps, &t.FailedSteps, &t.RequestedAt, &t.StartedAt, &t.CompletedAt,
			&t.CreatedAt, &t.UpdatedAt)
		return t, err
	})
	if err != nil {
		return nil, translate("list tasks", err)
	}
	return tasks, nil
}

// TransitionKey is the position of a transition in a task's history.
type TransitionKey struct {
	CreatedAt time.Time
	// Kind is 0 for the task's own transitions, 1 for its steps', 2 for
	// the task's own into a final state (ordered after its steps' changes).
	Kind int
	ID   int64
}

// TransitionEntry is a transition with its position and, for a step's, the
// step's name.
type TransitionEntry struct {
	Transition
	StepName string
	Key      TransitionKey
}

// TransitionPageParams asks for one page of a task's history.
type TransitionPageParams struct {
	TaskID uuid.UUID
	// StepID, when set, keeps only that step's transitions.
	StepID *uuid.UUID
	// After, when set, resumes strictly after this position.
	After *TransitionKey
	Limit int
}

//go:embed sql/task_transitions_page.sql
var taskTransitionsPageSQL string

//go:embed sql/task_exists.sql
var taskExistsSQL string

// TransitionsPage returns one page of a task's transitions, oldest first;
// ErrNotFound when the task does not exist.
func (s *Store) TransitionsPage(ctx context.Context, p TransitionPageParams) ([]TransitionEntry, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var exists bool
	if err := s.pool.QueryRow(ctx, taskExistsSQL, p.TaskID).Scan(&exists); err != nil {
		return nil, translate("list transitions", err)
	}
	if !exists {
		return nil, fmt.Errorf("list transitions: %w", ErrNotFound)
	}
	var afterAt *time.Time
	var afterKind *int
	var afterID *int64
	if p.After != nil {
		afterAt, afterKind, afterID = &p.After.CreatedAt, &p.After.Kind, &p.After.ID
	}
	rows, err := s.pool.Query(ctx, taskTransitionsPageSQL, p.TaskID, p.StepID, afterAt, afterKind, afterID, p.Limit)
	if err != nil {
		return nil, translate("list transitions", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TransitionEntry, error) {
		var e TransitionEntry
		var name *string
		var metadata []byte
		err := row.Scan(&e.StepID, &name, &e.From, &e.To, &metadata, &e.Actor, &e.CreatedAt, &e.Key.ID, &e.Key.Kind)
		e.Metadata = json.RawMessage(metadata)
		e.Key.CreatedAt = e.CreatedAt
		if name != nil {
			e.StepName = *name
		}
		return e, err
	})
	if err != nil {
		return nil, translate("list transitions", err)
	}
	return out, nil
}

// scopeArg keeps nil (no scope: every namespace) apart from empty (no
// namespace at all), which nullableSlice would merge.
func scopeArg(namespaces []string) []string {
	if namespaces == nil {
		return nil
	}
	return append([]string{}, namespaces...)
}

func nullableSlice(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nullableTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
