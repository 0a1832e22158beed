-- The audit trail: who did what to which object through the API. A row is
-- written for every mutating request (task creation, manual transitions,
-- template and webhook changes) and for every attempt an authenticated
-- caller was refused (403, or a 404 hiding another namespace's object).
-- Rows are appended, never updated; retention is the operator's (delete by
-- occurred_at).

-- +goose Up
CREATE TABLE audit_events (
  audit_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- The token's sub; '' when authentication is off.
  actor       text NOT NULL,
  -- The permission the route requires, e.g. tasker.task:cancel.
  action      text NOT NULL,
  -- The permission's resource (task, workflow_step, template, webhook…).
  resource    text NOT NULL,
  -- The object: a task or step id, a webhook id, ns.name@version.
  resource_id text,
  -- The namespace of the object, when it has one.
  namespace   text,
  method      text NOT NULL,
  path        text NOT NULL,
  status      integer NOT NULL,
  outcome     text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'denied')),
  request_id  text
);

-- GET /tasker/audit reads newest first, filtered by actor, resource or time;
-- these indexes serve each filter with the same order.
CREATE INDEX audit_events_by_time ON audit_events (occurred_at DESC, audit_id DESC);
CREATE INDEX audit_events_by_actor ON audit_events (actor, occurred_at DESC, audit_id DESC);
CREATE INDEX audit_events_by_resource ON audit_events (resource, occurred_at DESC, audit_id DESC);

-- +goose Down
DROP TABLE audit_events;
