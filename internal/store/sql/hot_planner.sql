-- Pins the planner for the engine's hot path (claims, flushes, rescues).
-- Every statement in it locates rows by key: by primary key, through the
-- edges, or at the head of the ready queue. Their row estimates come from
-- unnest() arrays and from tables that grow faster than autovacuum analyses
-- them, and stale estimates made the planner hash-join a flush of 170 rows
-- against a sequential scan of every step, or bitmap-scan every pending task
-- to start 50 of them. Scans and hash or merge joins are switched off for
-- these transactions only (set_config(…, true) ends with the transaction),
-- so the plans stay index-driven whatever the statistics say; the API's
-- list and analytics queries keep the planner's full choice.
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
