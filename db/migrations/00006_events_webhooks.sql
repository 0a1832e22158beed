-- Outbound webhooks: subscriptions, and the transactional outbox that is
-- also their delivery log. The engine writes outbox rows in the very
-- transaction of the transition that caused them (only for events that a
-- subscription matches), so an event is never lost to a crash; replicas
-- then deliver them at least once.

-- +goose Up
CREATE TABLE webhook_subscriptions (
  webhook_id  uuid PRIMARY KEY, -- UUIDv7
  url         text NOT NULL CHECK (url ~ '^https?://'),
  -- Event names or patterns: "task.completed", "task.*", "*".
  events      text[] NOT NULL CHECK (cardinality(events) > 0),
  -- The HMAC-SHA256 key of X-Tasker-Signature. Kept in clear: signing needs it.
  secret      text NOT NULL CHECK (secret <> ''),
  description text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  -- Deletion is soft, so outbox rows written a moment before it never
  -- point at nothing; their deliveries are cancelled instead.
  deleted_at  timestamptz
);

-- One row per (subscription, event): the unit of delivery. The event id is
-- shared by an event's deliveries to several subscriptions, so receivers
-- can deduplicate at-least-once deliveries by it.
CREATE TABLE webhook_outbox (
  delivery_id      uuid PRIMARY KEY, -- UUIDv7
  webhook_id       uuid NOT NULL REFERENCES webhook_subscriptions,
  event_id         uuid NOT NULL,
  event_name       text NOT NULL,
  task_id          uuid,
  -- The body sent, signed as the text PostgreSQL prints for it.
  body             jsonb NOT NULL,
  status           text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  -- When the next attempt may start. A replica that takes a delivery moves
  -- it past the attempt's timeout, so a replica that dies mid-attempt only
  -- delays it.
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_status_code integer,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz
) WITH (fillfactor = 80);

-- The delivery queue: only pending rows, so it stays small however long the
-- log grows.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE status = 'pending';
-- A subscription's delivery log, newest first.
CREATE INDEX webhook_outbox_by_webhook ON webhook_outbox (webhook_id, delivery_id DESC);
-- Retention sweeps finished rows by age.
CREATE INDEX webhook_outbox_finished ON webhook_outbox (finished_at) WHERE status <> 'pending';

-- Every attempt of a delivery, for the delivery log.
CREATE TABLE webhook_delivery_attempts (
  delivery_id uuid NOT NULL REFERENCES webhook_outbox ON DELETE CASCADE,
  attempt     integer NOT NULL,
  status_code integer,
  error       text,
  duration_ms double precision NOT NULL,
  replica     text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (delivery_id, attempt)
);

-- +goose Down
DROP TABLE webhook_delivery_attempts;
DROP TABLE webhook_outbox;
DROP TABLE webhook_subscriptions;
