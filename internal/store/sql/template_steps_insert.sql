INSERT INTO named_steps (named_task_id, name, position, handler, handler_config, description)
SELECT $1, s.name, s.position, s.handler, s.handler_config, NULLIF(s.description, '')
FROM unnest($2::text[], $3::int[], $4::text[], $5::jsonb[], $6::text[])
  AS s(name, position, handler, handler_config, description)
RETURNING named_step_id, name;
