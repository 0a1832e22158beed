-- Fills the retention workload's database: $1 tasks of three chained noop
-- steps that finished $2 ms ago (a millisecond apart, oldest first), each
-- with its edges and every transition a real run writes (3 for the task, 3
-- per step). Template ids are 0: no foreign key checks them (migration
-- 00009) and nothing reads them for finished tasks.
WITH t AS (
  INSERT INTO tasks (task_id, named_task_id, namespace_name, task_name, task_version, status,
                     total_steps, requested_at, started_at, completed_at, created_at, updated_at)
  SELECT gen_random_uuid(), 0, 'bench', 'finished3', '1.0.0', 'complete', 3, ts, ts, ts + interval '1 second', ts, ts
  FROM (SELECT now() - ($2::bigint + i) * interval '1 millisecond' AS ts FROM generate_series(1, $1::int) i) g
  RETURNING task_id, completed_at
), s AS (
  INSERT INTO workflow_steps (workflow_step_id, task_id, named_step_id, name, handler, status, attempts,
                              results, processed_at, created_at, updated_at)
  SELECT gen_random_uuid(), t.task_id, 0, 'step_' || k, 'noop', 'complete', 1, '{}', t.completed_at, t.completed_at, t.completed_at
  FROM t, generate_series(1, 3) k
  RETURNING workflow_step_id, task_id, name, created_at
), e AS (
  INSERT INTO workflow_step_edges (from_step_id, to_step_id, task_id)
  SELECT a.workflow_step_id, b.workflow_step_id, a.task_id
  FROM s a JOIN s b ON b.task_id = a.task_id
   AND ((a.name, b.name) = ('step_1', 'step_2') OR (a.name, b.name) = ('step_2', 'step_3'))
), tt AS (
  INSERT INTO task_transitions (task_id, from_state, to_state, created_at)
  SELECT t.task_id, x.f, x.t, t.completed_at
  FROM t, (VALUES (NULL, 'pending'), ('pending', 'in_progress'), ('in_progress', 'complete')) x (f, t)
)
INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, created_at)
SELECT s.workflow_step_id, s.task_id, x.f, x.t, s.created_at
FROM s, (VALUES (NULL, 'pending'), ('pending', 'in_progress'), ('in_progress', 'complete')) x (f, t)
