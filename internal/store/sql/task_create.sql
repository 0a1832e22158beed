-- Creates a batch of tasks with all their steps, edges and initial
-- transitions in ONE statement (set-based: a group-committed batch of
-- creates, or one 10,000-step task, is still one statement and one round
-- trip). Tasks come as parallel arrays $1–$21, one element per task;
-- steps as $22–$38, one element per step, each naming its task; edges as
-- $39–$41. Tags travel as one JSON array per task (arrays of arrays must
-- be rectangular).
-- An idempotency key already used for a task's namespace/name makes its
-- insert a no-op; its steps then join no task and nothing of it is
-- written. The result names the tasks inserted.
-- Root steps become runnable at run_at (or now), each a few microseconds
-- after the previous one of its task ($42 = stagger): a task with
-- thousands of roots then interleaves with tasks created just after it
-- instead of starving them.
-- Steps with a concurrency or rate key (NULL for none) get the key's slot
-- counter or token bucket row, which claims lock; a task with a
-- concurrency key is admitted or queued by the tasks_admit trigger
-- (migration 00013), in the batch's order.
WITH new_tasks AS (
  SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[],
                       $8::text[], $9::text[], $10::jsonb[], $11::text[], $12::text[], $13::int[],
                       $14::timestamptz[], $15::text[], $16::text[], $17::int[], $18::int[], $19::text[],
                       $20::text[], $21::int[])
    WITH ORDINALITY AS n(task_id, named_task_id, namespace_name, task_name, task_version, context, initiator,
                         source_system, reason, tags, idempotency_key, request_hash, priority, run_at,
                         correlation_id, traceparent, total_steps, unfinished_steps, actor, limit_key, limit_max, ord)
), ins_task AS (
  INSERT INTO tasks (task_id, named_task_id, namespace_name, task_name, task_version, context, initiator,
                     source_system, reason, tags, idempotency_key, request_hash, priority, run_at,
                     correlation_id, traceparent, total_steps, unfinished_steps, limit_key, limit_max)
  SELECT n.task_id, n.named_task_id, n.namespace_name, n.task_name, n.task_version, n.context, n.initiator,
         n.source_system, n.reason, ARRAY(SELECT jsonb_array_elements_text(n.tags)), n.idempotency_key,
         n.request_hash, n.priority, n.run_at, n.correlation_id, n.traceparent, n.total_steps, n.unfinished_steps,
         n.limit_key, n.limit_max
  FROM new_tasks n
  ORDER BY n.ord
  ON CONFLICT (namespace_name, task_name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING task_id, run_at, priority
), written AS (
  -- The inserted tasks with what their steps and transitions need.
  SELECT i.task_id, i.run_at, i.priority, n.actor
  FROM ins_task i JOIN new_tasks n ON n.task_id = i.task_id
), steps AS (
  SELECT * FROM unnest($22::uuid[], $23::bigint[], $24::uuid[], $25::text[], $26::text[], $27::text[], $28::int[],
                       $29::bool[], $30::bool[], $31::int[], $32::bool[], $33::jsonb[], $34::int[],
                       $35::text[], $36::int[], $37::text[], $38::float8[])
    AS s(id, named_step_id, task_id, name, handler, queue, retry_limit, retryable, skippable, ord, bypassed,
         inputs, unfinished_parents, limit_key, limit_max, rate_key, rate_per_second)
), ins_steps AS (
  INSERT INTO workflow_steps (workflow_step_id, task_id, named_step_id, name, handler, queue, status, priority,
                              retry_limit, retryable, skippable, inputs, unfinished_parents, runnable_at, processed_at,
                              limit_key, limit_max, rate_key, rate_per_second)
  SELECT s.id, t.task_id, s.named_step_id, s.name, s.handler, s.queue,
         CASE WHEN s.bypassed THEN 'resolved_manually' ELSE 'pending' END,
         t.priority, s.retry_limit, s.retryable, s.skippable, s.inputs, s.unfinished_parents,
         CASE WHEN NOT s.bypassed AND s.unfinished_parents = 0
              THEN coalesce(t.run_at, now()) + s.ord * $42::bigint * interval '1 microsecond' END,
         CASE WHEN s.bypassed THEN now() END,
         s.limit_key, s.limit_max, s.rate_key, s.rate_per_second
  FROM steps s JOIN written t ON t.task_id = s.task_id
  RETURNING workflow_step_id, task_id, status
), ins_slots AS (
  -- Marked used, which locks an existing row until this create commits: a
  -- purge of unused keys waits for it and then leaves the row alone
  -- (migration 00018). Locked in key order, as claims lock them.
  INSERT INTO concurrency_slots (limit_key)
  SELECT DISTINCT s.limit_key FROM steps s JOIN written t ON t.task_id = s.task_id WHERE s.limit_key IS NOT NULL
  ORDER BY 1
  ON CONFLICT (limit_key) DO UPDATE SET used_at = now()
), ins_buckets AS (
  INSERT INTO rate_buckets (rate_key)
  SELECT DISTINCT s.rate_key FROM steps s JOIN written t ON t.task_id = s.task_id WHERE s.rate_key IS NOT NULL
  ORDER BY 1
  ON CONFLICT (rate_key) DO UPDATE SET used_at = now()
), ins_edges AS (
  INSERT INTO workflow_step_edges (from_step_id, to_step_id, task_id)
  SELECT e.from_id, e.to_id, t.task_id
  FROM unnest($39::uuid[], $40::uuid[], $41::uuid[]) AS e(from_id, to_id, task_id)
    JOIN written t ON t.task_id = e.task_id
), step_transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata, actor)
  SELECT s.workflow_step_id, s.task_id, NULL, 'pending', '{}'::jsonb, t.actor
  FROM ins_steps s JOIN written t ON t.task_id = s.task_id
  UNION ALL
  SELECT s.workflow_step_id, s.task_id, 'pending', 'resolved_manually', '{"reason":"bypassed"}'::jsonb, t.actor
  FROM ins_steps s JOIN written t ON t.task_id = s.task_id
  WHERE s.status = 'resolved_manually'
), task_transition AS (
  INSERT INTO task_transitions (task_id, from_state, to_state, metadata, actor)
  SELECT task_id, NULL, 'pending', '{}', actor FROM written
)
SELECT task_id FROM ins_task
