-- Row updates of the engine's tables, and how many were HOT (no index
-- entries written). Backends report their counts at most once a second,
-- so the last second of a run may be missing.
SELECT relname, n_tup_upd, n_tup_hot_upd
FROM pg_stat_user_tables
WHERE relname IN ('tasks', 'workflow_steps')
ORDER BY relname
