-- Where do problems go? One row per outcome: problems that passed
-- preflight, environments synthesized from them by status, and configurations kept.
SELECT
    coalesce(e.status, 'no environment: ' || coalesce(r.reason, 'not synthesized yet')) AS outcome,
    count(DISTINCT p.problem_id) AS problems,
    count(DISTINCT c.config_id) AS configs,
    count(DISTINCT CASE WHEN c.kept THEN c.config_id END) AS configs_kept
FROM problems p
LEFT JOIN environments e ON e.problem_id = p.problem_id
LEFT JOIN rejects r ON r.stage = 'environment' AND r.entity_id = p.problem_id
LEFT JOIN task_configs c ON c.env_id = e.env_id
WHERE p.preflight = 'pass'
GROUP BY 1
ORDER BY problems DESC, outcome;
