-- Purges up to $2 concurrency slots and up to $2 rate buckets not marked
-- used for $1 ms (migration 00018): a row that holds no slot and that no
-- task or step refers to any more is deleted; one still referred to is
-- marked used now, so the next batches look at others. Rows a create is
-- marking used are locked, and skipped. A create that marked a row after
-- this statement's snapshot makes the row's recheck fail (used_at is
-- fresh), so what the snapshot cannot see of that create never matters.
-- Returns the rows deleted and the rows looked at.
WITH slot_candidates AS MATERIALIZED (
  SELECT s.limit_key,
         s.running = 0
         AND NOT EXISTS (SELECT 1 FROM workflow_steps w WHERE w.limit_key = s.limit_key)
         AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.limit_key = s.limit_key) AS unused
  FROM concurrency_slots s
  WHERE s.used_at < now() - $1::bigint * interval '1 millisecond'
  ORDER BY s.used_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED
), slots_deleted AS (
  DELETE FROM concurrency_slots s USING slot_candidates c
  WHERE s.limit_key = c.limit_key AND c.unused
  RETURNING 1
), slots_kept AS (
  UPDATE concurrency_slots s SET used_at = now() FROM slot_candidates c
  WHERE s.limit_key = c.limit_key AND NOT c.unused
), bucket_candidates AS MATERIALIZED (
  SELECT b.rate_key,
         NOT EXISTS (SELECT 1 FROM workflow_steps w WHERE w.rate_key = b.rate_key) AS unused
  FROM rate_buckets b
  WHERE b.used_at < now() - $1::bigint * interval '1 millisecond'
  ORDER BY b.used_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED
), buckets_deleted AS (
  DELETE FROM rate_buckets b USING bucket_candidates c
  WHERE b.rate_key = c.rate_key AND c.unused
  RETURNING 1
), buckets_kept AS (
  UPDATE rate_buckets b SET used_at = now() FROM bucket_candidates c
  WHERE b.rate_key = c.rate_key AND NOT c.unused
)
SELECT (SELECT count(*) FROM slots_deleted) + (SELECT count(*) FROM buckets_deleted),
       greatest((SELECT count(*) FROM slot_candidates), (SELECT count(*) FROM bucket_candidates))
