-- Fewer index entries written per step.
--
-- A step writes two transition rows (claimed, finished) and its row is
-- updated three times (released, claimed, finished), each update non-HOT:
-- it changes a column of the ready-queue or lease index. Every such write
-- inserts into every index of its table, and under load the cost of an
-- index entry grows with the row versions the oldest open transaction
-- still needs (with several replicas, overlapping flush transactions keep
-- that horizon 100 ms back; see docs/benchmarks.md): a unique index checks
-- each live-looking entry of the same key against the heap, and index
-- pages fill with versions that cannot be removed yet.
--
-- * Transitions are keyed by (step, id) and (task, id). The identity column
--   alone was the primary key, an index no query reads (transitions are
--   always read by their step or task, in id order) that every insert
--   appended to, on the same right-most page from every backend; the
--   (step, id) and (task, id) indexes become the primary keys and the
--   transition tables have one index fewer (besides the partial index of
--   errors). Ids stay unique: they come from the identity.
-- * Step names are unique within a task by construction, not by an index:
--   steps are only inserted by the create statement, one per step of the
--   task's template version, whose names are unique
--   (named_steps UNIQUE (named_task_id, name)). A unique index on
--   (task_id, name) checked the other versions of the step's key on each of
--   its non-HOT updates; the index stays, for reading a task's steps.
--
-- Measured with `taskerd bench --workload throughput`, six alternating
-- runs each: PostgreSQL CPU per step 92.8 → 89.3 µs (1 replica) and
-- 133 → 125 µs (3 replicas).

-- +goose Up
CREATE UNIQUE INDEX workflow_step_transitions_key
  ON workflow_step_transitions (workflow_step_id, workflow_step_transition_id);
ALTER TABLE workflow_step_transitions DROP CONSTRAINT workflow_step_transitions_pkey;
ALTER TABLE workflow_step_transitions
  ADD CONSTRAINT workflow_step_transitions_pkey PRIMARY KEY USING INDEX workflow_step_transitions_key;
DROP INDEX workflow_step_transitions_step_id;

CREATE UNIQUE INDEX task_transitions_key ON task_transitions (task_id, task_transition_id);
ALTER TABLE task_transitions DROP CONSTRAINT task_transitions_pkey;
ALTER TABLE task_transitions ADD CONSTRAINT task_transitions_pkey PRIMARY KEY USING INDEX task_transitions_key;
DROP INDEX task_transitions_task_id;

CREATE INDEX workflow_steps_task_name ON workflow_steps (task_id, name);
ALTER TABLE workflow_steps DROP CONSTRAINT workflow_steps_task_id_name_key;

-- +goose Down
ALTER TABLE workflow_steps ADD CONSTRAINT workflow_steps_task_id_name_key UNIQUE (task_id, name);
DROP INDEX workflow_steps_task_name;

CREATE INDEX task_transitions_task_id ON task_transitions (task_id, task_transition_id);
ALTER TABLE task_transitions DROP CONSTRAINT task_transitions_pkey;
ALTER TABLE task_transitions ADD CONSTRAINT task_transitions_pkey PRIMARY KEY (task_transition_id);

CREATE INDEX workflow_step_transitions_step_id
  ON workflow_step_transitions (workflow_step_id, workflow_step_transition_id);
ALTER TABLE workflow_step_transitions DROP CONSTRAINT workflow_step_transitions_pkey;
ALTER TABLE workflow_step_transitions ADD CONSTRAINT workflow_step_transitions_pkey PRIMARY KEY (workflow_step_transition_id);
