package store

import (
	"context"
	_ "embed"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Webhook is a subscription of an HTTP endpoint to events.
type Webhook struct {
	ID  uuid.UUID
	URL string
	// Events are event names or patterns ("task.*", "*").
	Events      []string
	Secret      string
	Description string
	CreatedAt   time.Time
}

// WebhooksChannel is the notification channel that announces changes to
// the subscriptions, so every replica's matcher follows them.
func (s *Store) WebhooksChannel() string {
	ch := s.schema + "_webhooks"
	if len(ch) > maxChannelLength {
		ch = ch[:maxChannelLength]
	}
	return ch
}

// OutboxChannel is the notification channel that announces new deliveries.
func (s *Store) OutboxChannel() string {
	ch := s.schema + "_outbox"
	if len(ch) > maxChannelLength {
		ch = ch[:maxChannelLength]
	}
	return ch
}

//go:embed sql/webhook_insert.sql
var webhookInsertSQL string

// CreateWebhook stores a subscription (w.ID set by the caller) and fills
// its creation time.
func (s *Store) CreateWebhook(ctx context.Context, w *Webhook) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err := s.pool.QueryRow(ctx, webhookInsertSQL, w.ID, w.URL, w.Events, w.Secret, nullable(w.Description),
		s.WebhooksChannel()).Scan(&w.CreatedAt)
	return translate("create webhook", err)
}

//go:embed sql/webhook_list.sql
var webhookListSQL string

// Webhooks lists the live subscriptions.
func (s *Store) Webhooks(ctx context.Context) ([]Webhook, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, webhookListSQL)
	if err != nil {
		return nil, translate("list webhooks", err)
	}
	list, err := pgx.CollectRows(rows, scanWebhook)
	return list, translate("list webhooks", err)
}

//go:embed sql/webhook_get.sql
var webhookGetSQL string

// Webhook reads a live subscription; ErrNotFound when there is none.
func (s *Store) Webhook(ctx context.Context, id uuid.UUID) (*Webhook, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, webhookGetSQL, id)
	if err != nil {
		return nil, translate("get webhook", err)
	}
	w, err := pgx.CollectExactlyOneRow(rows, scanWebhook)
	if err != nil {
		return nil, translate("get webhook", err)
	}
	return &w, nil
}

func scanWebhook(row pgx.CollectableRow) (Webhook, error) {
	var w Webhook
	err := row.Scan(&w.ID, &w.URL, &w.Events, &w.Secret, &w.Description, &w.CreatedAt)
	return w, err
}

//go:embed sql/webhook_delete.sql
var webhookDeleteSQL string

// DeleteWebhook deletes a live subscription and cancels its pending
// deliveries; ErrNotFound when there is none.
func (s *Store) DeleteWebhook(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var n int64
	if err := s.pool.QueryRow(ctx, webhookDeleteSQL, id, s.WebhooksChannel()).Scan(&n); err != nil {
		return translate("delete webhook", err)
	}
	if n == 0 {
		return translate("delete webhook", pgx.ErrNoRows)
	}
	return nil
}

// errNoTx is a programming error: a hook was handed a zero Tx.
var errNoTx = errors.New("store: no transaction")
