-- Generic plans for the rest of the transaction (set_config(…, true) ends
-- with it): for statements that find rows by key whatever their arguments,
-- where planning each call anew costs more than running it.
SELECT set_config('plan_cache_mode', 'force_generic_plan', true)
