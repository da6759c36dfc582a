-- Which tools do the chosen oracles call most, and how many calls per configuration that uses them?
SELECT
    tool,
    sum(calls) AS total_calls,
    count(DISTINCT config_id) AS configs,
    count(DISTINCT env_id) AS environments,
    round(CAST(sum(calls) AS DOUBLE) / count(DISTINCT config_id), 2) AS calls_per_config,
    max(calls) AS max_calls_in_one_config
FROM tool_call_stats
GROUP BY tool
ORDER BY total_calls DESC, tool
LIMIT 50;
