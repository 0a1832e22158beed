package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// SQL of the template registry (tables task_namespaces, named_tasks, named_steps).
var (
	//go:embed sql/template_lock.sql
	templateLockSQL string
	//go:embed sql/template_namespace_upsert.sql
	templateNamespaceUpsertSQL string
	//go:embed sql/template_live_by_key.sql
	templateLiveByKeySQL string
	//go:embed sql/template_insert.sql
	templateInsertSQL string
	//go:embed sql/template_steps_insert.sql
	templateStepsInsertSQL string
	//go:embed sql/template_retire.sql
	templateRetireSQL string
	//go:embed sql/template_set_superseded_by.sql
	templateSetSupersededBySQL string
	//go:embed sql/template_notify.sql
	templateNotifySQL string
	//go:embed sql/template_unfinished_tasks.sql
	templateUnfinishedTasksSQL string
	//go:embed sql/template_list_live.sql
	templateListLiveSQL string
	//go:embed sql/template_by_ids.sql
	templateByIDsSQL string
)

// maxChannelLength is PostgreSQL's identifier limit (NAMEDATALEN - 1):
// LISTEN truncates a longer channel name, pg_notify refuses it.
const maxChannelLength = 63

// RegistryChannel is the NOTIFY channel on which template registrations
// and deletions of this schema are announced; the payload is the
// named_task_id that changed.
func (s *Store) RegistryChannel() string {
	ch := s.schema + "_registry"
	if len(ch) > maxChannelLength {
		ch = ch[:maxChannelLength]
	}
	return ch
}

// NewTemplate is a template version to register.
type NewTemplate struct {
	Namespace, Name, Version, Description string
	// Document is the canonical template document, stored as is.
	Document json.RawMessage
	// ContentHash identifies Document: an equal hash means "already registered".
	ContentHash string
	// Steps become named_steps rows, in order.
	Steps []NewNamedStep
	// Replace supersedes a live row with a different hash instead of
	// reporting a conflict.
	Replace bool
}

// NewNamedStep is one step of a NewTemplate.
type NewNamedStep struct {
	Name, Handler, Description string
	HandlerConfig              json.RawMessage
}

// RegisterOutcome says what RegisterTemplate did.
type RegisterOutcome string

// Outcomes of RegisterTemplate.
const (
	// RegisterCreated: no live row existed; one was inserted.
	RegisterCreated RegisterOutcome = "created"
	// RegisterUnchanged: a live row with the same hash exists; nothing changed.
	RegisterUnchanged RegisterOutcome = "unchanged"
	// RegisterReplaced: a live row with another hash was retired and a new one inserted.
	RegisterReplaced RegisterOutcome = "replaced"
	// RegisterConflict: a live row with another hash exists; nothing changed.
	RegisterConflict RegisterOutcome = "conflict"
)

// RegisterResult is the outcome and the live row after it.
type RegisterResult struct {
	Outcome RegisterOutcome
	// ID and ContentHash are the live row's: the new one, or the existing
	// one for unchanged and conflict.
	ID          int64
	ContentHash string
	// ReplacedID is the retired row, for RegisterReplaced.
	ReplacedID int64
}

// RegisterTemplate registers a template version in one transaction, which
// also notifies RegistryChannel. Concurrent registrations of the same
// namespace/name/version are serialised, so exactly one creates the row.
func (s *Store) RegisterTemplate(ctx context.Context, t NewTemplate) (RegisterResult, error) {
	var res RegisterResult
	err := s.templateTx(ctx, "register template", func(tx pgx.Tx) error {
		if err := lockTemplate(ctx, tx, s.schema, t.Namespace, t.Name, t.Version); err != nil {
			return err
		}
		var nsID int32
		if err := tx.QueryRow(ctx, templateNamespaceUpsertSQL, t.Namespace).Scan(&nsID); err != nil {
			return err
		}
		var liveID int64
		var liveHash string
		err := tx.QueryRow(ctx, templateLiveByKeySQL, t.Namespace, t.Name, t.Version).Scan(&liveID, &liveHash)
		switch {
		case err == nil && liveHash == t.ContentHash:
			res = RegisterResult{Outcome: RegisterUnchanged, ID: liveID, ContentHash: liveHash}
			return nil
		case err == nil && !t.Replace:
			res = RegisterResult{Outcome: RegisterConflict, ID: liveID, ContentHash: liveHash}
			return nil
		case err == nil:
			// Retire first: the unique index covers live rows only.
			if _, err := tx.Exec(ctx, templateRetireSQL, liveID); err != nil {
				return err
			}
			res = RegisterResult{Outcome: RegisterReplaced, ReplacedID: liveID}
		case errors.Is(err, pgx.ErrNoRows):
			res = RegisterResult{Outcome: RegisterCreated}
		default:
			return err
		}
		if err := tx.QueryRow(ctx, templateInsertSQL, nsID, t.Name, t.Version, t.Description, t.Document, t.ContentHash).Scan(&res.ID); err != nil {
			return err
		}
		res.ContentHash = t.ContentHash
		if err := insertSteps(ctx, tx, res.ID, t.Steps); err != nil {
			return err
		}
		if res.ReplacedID != 0 {
			if _, err := tx.Exec(ctx, templateSetSupersededBySQL, res.ReplacedID, res.ID); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, templateNotifySQL, s.RegistryChannel(), strconv.FormatInt(res.ID, 10))
		return err
	})
	return res, err
}

func lockTemplate(ctx context.Context, tx pgx.Tx, schema, namespace, name, version string) error {
	_, err := tx.Exec(ctx, templateLockSQL, "taskerd.registry:"+schema+":"+namespace+"/"+name+"@"+version)
	return err
}

func insertSteps(ctx context.Context, tx pgx.Tx, id int64, steps []NewNamedStep) error {
	names := make([]string, len(steps))
	positions := make([]int32, len(steps))
	handlers := make([]string, len(steps))
	configs := make([]string, len(steps))
	descriptions := make([]string, len(steps))
	for i, st := range steps {
		names[i], positions[i], handlers[i], descriptions[i] = st.Name, int32(i), st.Handler, st.Description
		configs[i] = "{}"
		if len(st.HandlerConfig) > 0 {
			configs[i] = string(st.HandlerConfig)
		}
	}
	_, err := tx.Exec(ctx, templateStepsInsertSQL, id, names, positions, handlers, configs, descriptions)
	return err
}

// DeleteTemplateResult says what DeleteTemplate did.
type DeleteTemplateResult struct {
	// ID is the live row found.
	ID int64
	// UnfinishedTasks counts the pending, in-progress and failed tasks of
	// the version (of any of its rows).
	UnfinishedTasks int64
	// Deleted is false when unfinished tasks kept the row live.
	Deleted bool
}

// DeleteTemplate soft-deletes the live row of a template version: tasks
// keep it, new tasks cannot use it. Unless force is set, a version with
// unfinished tasks is left alone (Deleted false). ErrNotFound when no live
// row exists.
func (s *Store) DeleteTemplate(ctx context.Context, namespace, name, version string, force bool) (DeleteTemplateResult, error) {
	var res DeleteTemplateResult
	err := s.templateTx(ctx, "delete template", func(tx pgx.Tx) error {
		if err := lockTemplate(ctx, tx, s.schema, namespace, name, version); err != nil {
			return err
		}
		var hash string
		if err := tx.QueryRow(ctx, templateLiveByKeySQL, namespace, name, version).Scan(&res.ID, &hash); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, templateUnfinishedTasksSQL, namespace, name, version).Scan(&res.UnfinishedTasks); err != nil {
			return err
		}
		if res.UnfinishedTasks > 0 && !force {
			return nil
		}
		if _, err := tx.Exec(ctx, templateRetireSQL, res.ID); err != nil {
			return err
		}
		res.Deleted = true
		_, err := tx.Exec(ctx, templateNotifySQL, s.RegistryChannel(), strconv.FormatInt(res.ID, 10))
		return err
	})
	return res, err
}

// TemplateSummary is a live template version without its document.
type TemplateSummary struct {
	ID                                                 int64
	Namespace, Name, Version, Description, ContentHash string
	StepCount                                          int
	CreatedAt                                          time.Time
}

// LiveTemplates lists every live template version, by namespace and name.
func (s *Store) LiveTemplates(ctx context.Context) ([]TemplateSummary, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, templateListLiveSQL)
	if err != nil {
		return nil, translateTemplateErr("list templates", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TemplateSummary, error) {
		var t TemplateSummary
		err := r.Scan(&t.ID, &t.Namespace, &t.Name, &t.Version, &t.Description, &t.ContentHash, &t.StepCount, &t.CreatedAt)
		return t, err
	})
	if err != nil {
		return nil, translateTemplateErr("list templates", err)
	}
	return list, nil
}

// LiveTemplateID finds the live row of a template version; ErrNotFound when none.
func (s *Store) LiveTemplateID(ctx context.Context, namespace, name, version string) (int64, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var id int64
	var hash string
	if err := s.pool.QueryRow(ctx, templateLiveByKeySQL, namespace, name, version).Scan(&id, &hash); err != nil {
		return 0, translateTemplateErr("find template", err)
	}
	return id, nil
}

// TemplateRow is one named_tasks row with its document and step ids.
type TemplateRow struct {
	ID                                    int64
	Namespace, Name, Version, Description string
	Document                              json.RawMessage
	ContentHash                           string
	// DeletedAt is set once the row was deleted or replaced.
	DeletedAt *time.Time
	// SupersededBy is the row that replaced this one.
	SupersededBy *int64
	CreatedAt    time.Time
	// StepIDs maps step names to named_step_id.
	StepIDs map[string]int64
}

// TemplatesByID loads rows by id, deleted ones included; missing ids are
// left out.
func (s *Store) TemplatesByID(ctx context.Context, ids []int64) ([]TemplateRow, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, templateByIDsSQL, ids)
	if err != nil {
		return nil, translateTemplateErr("load templates", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TemplateRow, error) {
		var t TemplateRow
		err := r.Scan(&t.ID, &t.Namespace, &t.Name, &t.Version, &t.Description, &t.Document, &t.ContentHash,
			&t.DeletedAt, &t.SupersededBy, &t.CreatedAt, &t.StepIDs)
		return t, err
	})
	if err != nil {
		return nil, translateTemplateErr("load templates", err)
	}
	return list, nil
}

// templateTx runs fn in a transaction bounded by the query timeout.
func (s *Store) templateTx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return translateTemplateErr(op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return translateTemplateErr(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return translateTemplateErr(op, err)
	}
	return nil
}

func translateTemplateErr(op string, err error) error {
	if isUndefinedTable(err) {
		return fmt.Errorf("%s: %w", op, ErrNotMigrated)
	}
	return translate(op, err)
}
