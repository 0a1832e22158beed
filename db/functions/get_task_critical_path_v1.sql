-- get_task_critical_path(): the chain of steps that decides how long a task
-- takes: the path from a root to a leaf of the task's DAG whose steps' run
-- times add up to the most. A step's run time is from its first claim (its
-- first transition to in_progress) to processed_at, or to now() while it is
-- unfinished; a step never claimed weighs 0. Ties, and a task nothing of
-- which has run yet, go to the path with more steps, so before any work the
-- critical path is the longest chain (calculate_dependency_levels' depth).
-- Remaining ties go to the step that comes first by (dependency level,
-- name), so the answer is stable.
--
-- It exists for the API's dependency view of a task (include=dependencies)
-- and for analysis; it is not on the engine's hot path. Dynamic programming
-- in topological order, the order calculate_dependency_levels() gives: each
-- step keeps the best path ending at it. Linear in steps and edges, unlike
-- enumerating paths, which is exponential in a layered DAG.
--
-- Rows: the path from root (path_position 1) to leaf, each with its own
-- run time and the running total; none when the task has no steps.
CREATE OR REPLACE FUNCTION get_task_critical_path(input_task_id uuid)
RETURNS TABLE (
  path_position    integer,
  workflow_step_id uuid,
  name             text,
  status           text,
  duration_ms      bigint,
  cumulative_ms    bigint
)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
  ids    uuid[]    := '{}';
  names  text[]    := '{}';
  states text[]    := '{}';
  weight bigint[]  := '{}';
  cost   bigint[]  := '{}';
  len    integer[] := '{}';
  prev   integer[] := '{}';
  r      record;
  p      integer;
  best   integer;
  n      integer := 0;
  tail   integer;
  chain  integer[] := '{}';
BEGIN
  FOR r IN
    WITH lv AS (
      SELECT l.workflow_step_id, l.dependency_level, l.name
      FROM calculate_dependency_levels(input_task_id) l
    ), numbered AS (
      -- Steps no root reaches (only in a cyclic graph, which the engine never
      -- builds) have no level and come last.
      SELECT lv.workflow_step_id,
             row_number() OVER (ORDER BY lv.dependency_level NULLS LAST, lv.name)::integer AS idx
      FROM lv
    )
    SELECT nb.idx, ws.workflow_step_id AS id, ws.name AS step_name, ws.status AS step_status,
           CASE WHEN fs.first_start IS NULL THEN 0
                ELSE greatest(0, floor(extract(epoch FROM coalesce(ws.processed_at, now()) - fs.first_start) * 1000))::bigint
           END AS w,
           ARRAY(SELECT pn.idx
                 FROM workflow_step_edges e
                 JOIN numbered pn ON pn.workflow_step_id = e.from_step_id
                 WHERE e.to_step_id = ws.workflow_step_id
                 ORDER BY pn.idx) AS parents
    FROM numbered nb
    JOIN workflow_steps ws ON ws.workflow_step_id = nb.workflow_step_id
    LEFT JOIN LATERAL (
      SELECT min(tr.created_at) AS first_start
      FROM workflow_step_transitions tr
      WHERE tr.workflow_step_id = ws.workflow_step_id AND tr.to_state = 'in_progress'
    ) fs ON true
    ORDER BY nb.idx
  LOOP
    n := r.idx;
    ids[n] := r.id;
    names[n] := r.step_name;
    states[n] := r.step_status;
    weight[n] := r.w;
    best := NULL;
    FOREACH p IN ARRAY r.parents LOOP
      -- A parent not yet seen (possible only in a cycle) has no cost: skip it.
      CONTINUE WHEN cost[p] IS NULL;
      IF best IS NULL OR cost[p] > cost[best] OR (cost[p] = cost[best] AND len[p] > len[best]) THEN
        best := p;
      END IF;
    END LOOP;
    prev[n] := best;
    cost[n] := r.w + coalesce(cost[best], 0);
    len[n] := 1 + coalesce(len[best], 0);
  END LOOP;
  IF n = 0 THEN
    RETURN;
  END IF;
  tail := 1;
  FOR i IN 2..n LOOP
    IF cost[i] > cost[tail] OR (cost[i] = cost[tail] AND len[i] > len[tail]) THEN
      tail := i;
    END IF;
  END LOOP;
  WHILE tail IS NOT NULL LOOP
    chain := tail || chain;
    tail := prev[tail];
  END LOOP;
  FOR i IN 1..array_length(chain, 1) LOOP
    path_position := i;
    workflow_step_id := ids[chain[i]];
    name := names[chain[i]];
    status := states[chain[i]];
    duration_ms := weight[chain[i]];
    cumulative_ms := cost[chain[i]];
    RETURN NEXT;
  END LOOP;
END
$$;
