-- The initial schema, modelled on Tasker's tables. Every object lands in the
-- schema named by TASKER_DB_SCHEMA: the migrator sets search_path to it, so
-- nothing here names a schema.
--
-- Storage: workflow_steps and tasks are updated several times in their life
-- (claim, complete, counters), so they keep free space on each page
-- (fillfactor) for HOT updates. Transition tables are append-only.

-- +goose Up
CREATE TABLE task_namespaces (
  task_namespace_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name              text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9_]+$'),
  description       text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A named task is one version of a task template. The template document is
-- kept normalised, with a hash so that registering it again is a no-op.
-- Deleting a template is soft: tasks keep pointing at it.
CREATE TABLE named_tasks (
  named_task_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  task_namespace_id integer NOT NULL REFERENCES task_namespaces,
  name              text NOT NULL CHECK (name ~ '^[a-z0-9_]+$'),
  version           text NOT NULL CHECK (version <> ''),
  description       text,
  template          jsonb NOT NULL,
  content_hash      text NOT NULL,
  deleted_at        timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (task_namespace_id, name, version)
);

-- The step templates of one named task version.
CREATE TABLE named_steps (
  named_step_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  named_task_id  bigint NOT NULL REFERENCES named_tasks ON DELETE CASCADE,
  name           text NOT NULL,
  position       integer NOT NULL,
  handler        text NOT NULL,
  handler_config jsonb NOT NULL DEFAULT '{}',
  description    text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (named_task_id, name)
);

CREATE TABLE tasks (
  task_id          uuid PRIMARY KEY, -- UUIDv7, made by taskerd: time-ordered, so recent tasks share index pages
  named_task_id    bigint NOT NULL REFERENCES named_tasks,
  -- Copied from the named task: immutable, and they scope idempotency keys
  -- and list filters without a join.
  namespace_name   text NOT NULL,
  task_name        text NOT NULL,
  task_version     text NOT NULL,
  status           text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
  context          jsonb NOT NULL DEFAULT '{}',
  initiator        text,
  source_system    text,
  reason           text,
  tags             text[] NOT NULL DEFAULT '{}',
  idempotency_key  text,
  request_hash     text, -- hash of the create request, to tell a retry from a conflicting reuse of a key
  priority         integer NOT NULL DEFAULT 0,
  run_at           timestamptz,
  correlation_id   text,
  traceparent      text,
  -- Counters kept by the engine so that finalisation is a counter reaching
  -- zero, not a scan of the task's steps.
  total_steps      integer NOT NULL DEFAULT 0 CHECK (total_steps >= 0),
  unfinished_steps integer NOT NULL DEFAULT 0 CHECK (unfinished_steps >= 0),
  failed_steps     integer NOT NULL DEFAULT 0 CHECK (failed_steps >= 0),
  requested_at     timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  completed_at     timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);

CREATE UNIQUE INDEX tasks_idempotency_key ON tasks (namespace_name, task_name, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_named_task_id ON tasks (named_task_id);
-- Unfinished tasks are few next to finished ones; the partial index keeps
-- "what is still running" cheap however much history is kept.
CREATE INDEX tasks_unfinished ON tasks (status, task_id)
  WHERE status IN ('pending', 'in_progress', 'error');

CREATE TABLE workflow_steps (
  workflow_step_id   uuid PRIMARY KEY, -- UUIDv7
  task_id            uuid NOT NULL REFERENCES tasks ON DELETE CASCADE,
  named_step_id      bigint NOT NULL REFERENCES named_steps,
  name               text NOT NULL,
  handler            text NOT NULL,
  -- Where the step is claimed from: '' for the engine's own handlers,
  -- 'remote:<name>' for remote workers.
  queue              text NOT NULL DEFAULT '',
  status             text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually')),
  priority           integer NOT NULL DEFAULT 0,
  attempts           integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  -- A manual retry gives a fresh budget without renumbering attempts: the
  -- attempts that count against retry_limit are attempts - retry_base.
  retry_base         integer NOT NULL DEFAULT 0 CHECK (retry_base >= 0),
  retry_limit        integer NOT NULL DEFAULT 3 CHECK (retry_limit >= 0),
  retryable          boolean NOT NULL DEFAULT true,
  skippable          boolean NOT NULL DEFAULT false,
  inputs             jsonb,
  results            jsonb,
  last_error         jsonb,
  -- Readiness kept incrementally: parents not yet complete or resolved, and
  -- the time from which the step may be claimed (NULL while it may not).
  unfinished_parents integer NOT NULL DEFAULT 0 CHECK (unfinished_parents >= 0),
  runnable_at        timestamptz,
  lease_owner        text,
  lease_expires_at   timestamptz,
  last_attempted_at  timestamptz,
  processed_at       timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  UNIQUE (task_id, name)
) WITH (fillfactor = 70);

-- The ready queue: only claimable rows are in it, so it stays small however
-- many finished steps the table holds.
CREATE INDEX workflow_steps_ready ON workflow_steps (queue, priority DESC, runnable_at, workflow_step_id)
  WHERE status = 'pending' AND runnable_at IS NOT NULL;
-- Running steps by lease expiry, to find the work of dead replicas.
CREATE INDEX workflow_steps_leases ON workflow_steps (lease_expires_at)
  WHERE status = 'in_progress';

CREATE TABLE workflow_step_edges (
  from_step_id uuid NOT NULL REFERENCES workflow_steps ON DELETE CASCADE,
  to_step_id   uuid NOT NULL REFERENCES workflow_steps ON DELETE CASCADE,
  task_id      uuid NOT NULL,
  PRIMARY KEY (from_step_id, to_step_id),
  CHECK (from_step_id <> to_step_id)
);
CREATE INDEX workflow_step_edges_to ON workflow_step_edges (to_step_id);

-- +goose StatementBegin
-- +taskerd include functions/transition_legality_v1.sql
-- +goose StatementEnd

-- Transitions are the append-only audit of every state change. The row in
-- tasks / workflow_steps holds the current state; the order of a task's or
-- step's transitions is the order of their ids.
CREATE TABLE task_transitions (
  task_transition_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  task_id            uuid NOT NULL REFERENCES tasks ON DELETE CASCADE,
  from_state         text,
  to_state           text NOT NULL,
  metadata           jsonb NOT NULL DEFAULT '{}',
  actor              text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT task_transitions_legal CHECK (task_transition_is_legal(from_state, to_state))
);
CREATE INDEX task_transitions_task_id ON task_transitions (task_id, task_transition_id);

CREATE TABLE workflow_step_transitions (
  workflow_step_transition_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  workflow_step_id            uuid NOT NULL REFERENCES workflow_steps ON DELETE CASCADE,
  task_id                     uuid NOT NULL,
  from_state                  text,
  to_state                    text NOT NULL,
  metadata                    jsonb NOT NULL DEFAULT '{}',
  actor                       text,
  created_at                  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT workflow_step_transitions_legal CHECK (step_transition_is_legal(from_state, to_state))
);
CREATE INDEX workflow_step_transitions_step_id ON workflow_step_transitions (workflow_step_id, workflow_step_transition_id);

-- +goose StatementBegin
-- +taskerd include views/task_status_counts_v1.sql
-- +goose StatementEnd

-- +goose StatementBegin
-- +taskerd include functions/get_system_health_counts_v1.sql
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION IF EXISTS get_system_health_counts();
DROP VIEW IF EXISTS task_status_counts;
DROP TABLE IF EXISTS workflow_step_transitions;
DROP TABLE IF EXISTS task_transitions;
DROP TABLE IF EXISTS workflow_step_edges;
DROP TABLE IF EXISTS workflow_steps;
DROP TABLE IF EXISTS tasks;
DROP TABLE IF EXISTS named_steps;
DROP TABLE IF EXISTS named_tasks;
DROP TABLE IF EXISTS task_namespaces;
DROP FUNCTION IF EXISTS step_transition_is_legal(text, text);
DROP FUNCTION IF EXISTS task_transition_is_legal(text, text);
