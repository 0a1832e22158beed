-- Creates a task with all its steps, edges and initial transitions in ONE
-- statement (set-based: a 10,000-step task is still one round trip).
-- Foreign keys between the sibling CTEs are checked at the end of the
-- statement, when every row exists.
-- An idempotency key already used for this namespace/name makes the task
-- insert a no-op; the steps then join zero rows and nothing is written.
-- Root steps become runnable at run_at (or now), each a few microseconds
-- after the previous one ($30 = stagger): a task with thousands of roots
-- then interleaves with tasks created just after it instead of starving them.
-- Steps with a concurrency or rate key ($36-$39, NULL for none) get the
-- key's slot counter or token bucket row, which claims lock; a task with a
-- concurrency key ($34, $35) is admitted or queued by the tasks_admit
-- trigger (migration 00013).
WITH ins_task AS (
  INSERT INTO tasks (task_id, named_task_id, namespace_name, task_name, task_version, context, initiator,
                     source_system, reason, tags, idempotency_key, request_hash, priority, run_at,
                     correlation_id, traceparent, total_steps, unfinished_steps, limit_key, limit_max)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $34, $35)
  ON CONFLICT (namespace_name, task_name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING task_id, run_at, priority
), steps AS (
  SELECT * FROM unnest($19::uuid[], $20::bigint[], $21::text[], $22::text[], $23::text[], $24::int[],
                       $25::bool[], $26::bool[], $27::bool[], $28::jsonb[], $29::int[],
                       $36::text[], $37::int[], $38::text[], $39::float8[])
    WITH ORDINALITY AS s(id, named_step_id, name, handler, queue, retry_limit, retryable, skippable, bypassed,
                         inputs, unfinished_parents, limit_key, limit_max, rate_key, rate_per_second, ord)
), ins_steps AS (
  INSERT INTO workflow_steps (workflow_step_id, task_id, named_step_id, name, handler, queue, status, priority,
                              retry_limit, retryable, skippable, inputs, unfinished_parents, runnable_at, processed_at,
                              limit_key, limit_max, rate_key, rate_per_second)
  SELECT s.id, t.task_id, s.named_step_id, s.name, s.handler, s.queue,
         CASE WHEN s.bypassed THEN 'resolved_manually' ELSE 'pending' END,
         t.priority, s.retry_limit, s.retryable, s.skippable, s.inputs, s.unfinished_parents,
         CASE WHEN NOT s.bypassed AND s.unfinished_parents = 0
              THEN coalesce(t.run_at, now()) + (s.ord - 1) * $30::bigint * interval '1 microsecond' END,
         CASE WHEN s.bypassed THEN now() END,
         s.limit_key, s.limit_max, s.rate_key, s.rate_per_second
  FROM steps s CROSS JOIN ins_task t
  RETURNING workflow_step_id, task_id, status
), ins_slots AS (
  INSERT INTO concurrency_slots (limit_key)
  SELECT DISTINCT s.limit_key FROM steps s CROSS JOIN ins_task t WHERE s.limit_key IS NOT NULL
  ON CONFLICT DO NOTHING
), ins_buckets AS (
  INSERT INTO rate_buckets (rate_key)
  SELECT DISTINCT s.rate_key FROM steps s CROSS JOIN ins_task t WHERE s.rate_key IS NOT NULL
  ON CONFLICT DO NOTHING
), ins_edges AS (
  INSERT INTO workflow_step_edges (from_step_id, to_step_id, task_id)
  SELECT e.from_id, e.to_id, t.task_id
  FROM unnest($31::uuid[], $32::uuid[]) AS e(from_id, to_id) CROSS JOIN ins_task t
), step_transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata, actor)
  SELECT workflow_step_id, task_id, NULL, 'pending', '{}'::jsonb, $33 FROM ins_steps
  UNION ALL
  SELECT workflow_step_id, task_id, 'pending', 'resolved_manually', '{"reason":"bypassed"}'::jsonb, $33
  FROM ins_steps WHERE status = 'resolved_manually'
), task_transition AS (
  INSERT INTO task_transitions (task_id, from_state, to_state, metadata, actor)
  SELECT task_id, NULL, 'pending', '{}', $33 FROM ins_task
)
SELECT task_id FROM ins_task
