package store

import (
	"context"
	_ "embed"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pause is a namespace or template whose steps are not claimed.
type Pause struct {
	Namespace string `json:"namespace"`
	// Name is the template name (every version); "" pauses the namespace.
	Name     string    `json:"name,omitempty"`
	PausedAt time.Time `json:"paused_at"`
	PausedBy string    `json:"paused_by,omitempty"`
}

//go:embed sql/pause_insert.sql
var pauseInsertSQL string

//go:embed sql/pause_delete.sql
var pauseDeleteSQL string

//go:embed sql/pause_unpark.sql
var pauseUnparkSQL string

//go:embed sql/pause_list.sql
var pauseListSQL string

// PauseHandlers pauses namespace (name "") or every version of the template
// name, as actor: its steps are no longer claimed, new tasks wait, running
// steps finish. It returns how many runnable steps it parked. Pausing what
// is already paused changes nothing.
func (s *Store) PauseHandlers(ctx context.Context, namespace, name, actor string) (parked int, err error) {
	// In a retried transaction: parking locks steps in no fixed order, so
	// it can deadlock with a completion flush (which then wins the retry).
	err = s.inTx(ctx, "pause", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, pauseInsertSQL, namespace, name, nullable(actor)).Scan(&parked)
	})
	return parked, err
}

// ResumeHandlers lifts the pause of namespace (name "") or of the template
// name, makes the steps it parked runnable and NOTIFYs channel. resumed is
// false when there was no such pause.
func (s *Store) ResumeHandlers(ctx context.Context, namespace, name, channel string) (resumed bool, unparked int, err error) {
	var notified int64
	err = s.inTx(ctx, "resume", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, pauseDeleteSQL, namespace, name)
		if err != nil {
			return err
		}
		resumed = tag.RowsAffected() > 0
		return tx.QueryRow(ctx, pauseUnparkSQL, namespace, name, channel).Scan(&unparked, &notified)
	})
	return resumed, unparked, err
}

// Pauses lists the pauses in force.
func (s *Store) Pauses(ctx context.Context) ([]Pause, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, pauseListSQL)
	if err != nil {
		return nil, translate("list pauses", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Pause, error) {
		var p Pause
		err := row.Scan(&p.Namespace, &p.Name, &p.PausedAt, &p.PausedBy)
		return p, err
	})
	if err != nil {
		return nil, translate("list pauses", err)
	}
	return out, nil
}
