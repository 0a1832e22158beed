-- Claims up to $2 runnable steps of queue $1 for replica $3 in ONE
-- statement: pick them in priority and runnable order, skipping rows other
-- replicas are claiming (SKIP LOCKED: claimers never wait on each other),
-- mark them in_progress with a lease, count the attempt, record the
-- transitions, and move tasks to in_progress on their first claim.
-- The result carries what the handler needs, parents' results included.
-- Rows are always located by key (= ANY, or lookups kept apart with
-- OFFSET 0) so the plan stays index-driven even on tables that grew faster
-- than autovacuum analyses them.
--
-- Gates (migration 00013). A candidate of a paused template, or whose
-- concurrency key has no free slot, is parked instead (runnable_at NULL:
-- out of the ready index, never scanned again until it is unparked); one
-- whose rate key has no token is put back with runnable_at at the time its
-- token is due. Only candidates with a limit_key or rate_key, or all of
-- them while some pause exists, are looked at: without limits or pauses
-- the gates cost one probe of the (empty) pause table.
WITH candidates AS (
  SELECT ctid AS tid, workflow_step_id, task_id, runnable_at, limit_key, limit_max, rate_key, rate_per_second
  FROM workflow_steps
  WHERE queue = $1 AND status = 'pending' AND runnable_at IS NOT NULL AND runnable_at <= now()
  ORDER BY priority DESC, runnable_at, workflow_step_id
  LIMIT $2
  FOR UPDATE SKIP LOCKED
), gated AS (
  SELECT c.*,
         -- The pause row is held until this claim commits: a resume waits
         -- for it, so it unparks what this claim parks (pause_delete.sql).
         -- A pause deleted meanwhile is skipped, and the step runs.
         EXISTS (SELECT 1 FROM handler_pauses) AND EXISTS (SELECT 1 FROM tasks t JOIN handler_pauses p
                   ON p.namespace_name = t.namespace_name AND p.task_name IN ('', t.task_name)
                 WHERE t.task_id = c.task_id FOR KEY SHARE OF p) AS paused
  FROM candidates c
  WHERE c.limit_key IS NOT NULL OR c.rate_key IS NOT NULL OR EXISTS (SELECT 1 FROM handler_pauses)
), rated AS (
  SELECT g.workflow_step_id, g.rate_key, g.rate_per_second,
         row_number() OVER (PARTITION BY g.rate_key ORDER BY g.runnable_at, g.workflow_step_id) AS k
  FROM gated g WHERE g.rate_key IS NOT NULL AND NOT g.paused
), buckets AS (
  -- Refilled to at most one token; the lock orders the key's claimers.
  SELECT b.rate_key, n.rps, n.want,
         least(1.0, b.tokens + n.rps * extract(epoch FROM clock_timestamp() - b.refilled_at)) AS tokens
  FROM (SELECT rate_key, count(*) AS want, min(rate_per_second) AS rps FROM rated GROUP BY rate_key) n
  JOIN rate_buckets b ON b.rate_key = n.rate_key
  ORDER BY b.rate_key
  FOR UPDATE OF b
), limited AS (
  -- Steps with a token (or no rate key) queue for their concurrency key.
  SELECT g.workflow_step_id, g.limit_key, g.limit_max,
         row_number() OVER (PARTITION BY g.limit_key ORDER BY g.runnable_at, g.workflow_step_id) AS k
  FROM gated g LEFT JOIN rated r USING (workflow_step_id) LEFT JOIN buckets b ON b.rate_key = r.rate_key
  WHERE g.limit_key IS NOT NULL AND NOT g.paused AND (r.k IS NULL OR r.k <= floor(b.tokens))
), slots AS (
  SELECT s.limit_key, greatest(0, least(n.want, n.max - s.running)) AS granted
  FROM (SELECT limit_key, count(*) AS want, min(limit_max) AS max FROM limited GROUP BY limit_key) n
  JOIN concurrency_slots s ON s.limit_key = n.limit_key
  ORDER BY s.limit_key
  FOR UPDATE OF s
), taken AS (
  UPDATE concurrency_slots s SET running = s.running + sl.granted
  FROM slots sl WHERE s.limit_key = sl.limit_key AND sl.granted > 0
), spent AS (
  -- A token is spent by a step that starts: one with a token that also got
  -- its concurrency slot (or has no limit key). A step with a token but no
  -- slot is parked for its slot and leaves the token to the next claimer.
  UPDATE rate_buckets b SET tokens = k.tokens - u.used, refilled_at = clock_timestamp()
  FROM buckets k,
       LATERAL (SELECT count(*) AS used
                FROM rated r LEFT JOIN limited l USING (workflow_step_id) LEFT JOIN slots sl ON sl.limit_key = l.limit_key
                WHERE r.rate_key = k.rate_key AND r.k <= floor(k.tokens)
                  AND (l.workflow_step_id IS NULL OR l.k <= coalesce(sl.granted, 0))) u
  WHERE b.rate_key = k.rate_key
), held AS (
  -- The gated candidates that do not run now, and why.
  SELECT g.workflow_step_id, g.runnable_at,
         CASE WHEN g.paused THEN 'paused'
              WHEN r.k > floor(b.tokens) THEN 'rate'
              ELSE 'limit' END AS reason,
         clock_timestamp() + (r.k - b.tokens) / b.rps * interval '1 second' AS due
  FROM gated g
  LEFT JOIN rated r USING (workflow_step_id) LEFT JOIN buckets b ON b.rate_key = r.rate_key
  LEFT JOIN limited l USING (workflow_step_id) LEFT JOIN slots sl ON sl.limit_key = l.limit_key
  WHERE g.paused OR r.k > floor(b.tokens) OR l.k > coalesce(sl.granted, 0)
), parked AS (
  UPDATE workflow_steps w
  SET runnable_at = CASE WHEN h.reason = 'rate' THEN h.due END,
      parked = CASE WHEN h.reason <> 'rate' THEN h.reason END,
      parked_at = CASE WHEN h.reason <> 'rate' THEN h.runnable_at END,
      updated_at = now()
  FROM held h WHERE w.workflow_step_id = h.workflow_step_id
  RETURNING h.reason, h.due
), claimed AS (
  UPDATE workflow_steps w
  SET status = 'in_progress', attempts = w.attempts + 1, lease_owner = $3,
      lease_expires_at = now() + $4::bigint * interval '1 millisecond',
      last_attempted_at = now(), runnable_at = NULL, updated_at = now()
  FROM candidates c
  -- The version candidates locked, by its tuple id rather than a second
  -- primary-key probe (which also visits the key's dead versions): locked
  -- by this statement, the row cannot have moved since. One case is left
  -- out: a candidate another transaction updated after this statement's
  -- snapshot, still pending and runnable (say a priority edit), is locked
  -- in its new version, which the snapshot cannot see; it is then not
  -- claimed, stays pending, and is counted in the summary row below, so
  -- the caller claims again at once. (A tuple id taken without a lock
  -- goes stale under a concurrent update: the flushes find rows by key.)
  WHERE w.ctid = c.tid
    AND NOT EXISTS (SELECT 1 FROM held h WHERE h.workflow_step_id = c.workflow_step_id)
  RETURNING w.workflow_step_id, w.task_id, w.name, w.handler, w.attempts, w.retry_base, w.retry_limit,
            w.inputs, w.lease_expires_at, c.runnable_at AS ready_at
), step_transitions AS (
  INSERT INTO workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata)
  SELECT workflow_step_id, task_id, 'pending', 'in_progress', jsonb_build_object('attempt', attempts, 'replica', $3::text)
  FROM claimed
), starting AS MATERIALIZED (
  -- The pending tasks of the claimed steps, locked in id order, one key
  -- lookup each: the FOR UPDATE inside the LATERAL subquery locks as the
  -- join reaches each row of the sorted input (an ORDER BY above the join
  -- would sort its result, not the locks). Two claims starting tasks with
  -- several root steps would otherwise lock them in opposite orders. Not
  -- "= ANY (ARRAY(…))": with that, a stale estimate chose to scan every
  -- pending task and filter them against the array.
  SELECT c.task_id
  FROM (SELECT DISTINCT task_id FROM claimed ORDER BY task_id) c,
       LATERAL (SELECT 1 FROM tasks t WHERE t.task_id = c.task_id AND t.status = 'pending' FOR UPDATE) t
), started AS (
  UPDATE tasks t SET status = 'in_progress', started_at = coalesce(t.started_at, now()), updated_at = now()
  FROM starting s
  WHERE t.task_id = s.task_id
  RETURNING t.task_id
), task_transitions AS (
  INSERT INTO task_transitions (task_id, from_state, to_state, metadata)
  SELECT task_id, 'pending', 'in_progress', jsonb_build_object('replica', $3::text) FROM started
)
SELECT c.workflow_step_id, c.task_id, t.named_task_id, t.namespace_name, t.task_name, t.task_version, c.name,
       c.handler, c.attempts, c.inputs, t.context, coalesce(t.correlation_id, ''), coalesce(t.traceparent, ''),
       c.lease_expires_at,
       (SELECT jsonb_object_agg(p.name, p.results)
        FROM workflow_step_edges e,
             -- OFFSET 0 keeps this a per-edge primary-key lookup: flattened
             -- into a join, a table without statistics gets a hash join
             -- over a scan of every step, once per claimed row.
             LATERAL (SELECT name, results FROM workflow_steps p
                      WHERE p.workflow_step_id = e.from_step_id OFFSET 0) p
        WHERE e.to_step_id = c.workflow_step_id) AS parent_results,
       EXISTS (SELECT 1 FROM started s WHERE s.task_id = c.task_id) AS task_started,
       c.ready_at
FROM claimed c, LATERAL (SELECT * FROM tasks t WHERE t.task_id = c.task_id OFFSET 0) t
UNION ALL
-- One summary row (nil step id) when candidates were not claimed: how
-- many, and when the earliest rate-limited one is due, so the caller claims
-- again (parked rows freed room in its batch; a candidate locked in a
-- version newer than the snapshot is claimable now) and wakes up on time.
SELECT '00000000-0000-0000-0000-000000000000'::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 0::bigint,
       '', '', '', '', '', n.unclaimed::int, NULL::jsonb, NULL::jsonb, '', '',
       coalesce((SELECT min(due) FROM parked WHERE reason = 'rate'), 'epoch'), NULL::jsonb, false, now()
FROM (SELECT (SELECT count(*) FROM candidates) - (SELECT count(*) FROM claimed) AS unclaimed OFFSET 0) n
WHERE n.unclaimed > 0
