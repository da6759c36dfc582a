-- For kept task configurations, how many oracle tool calls does each difficulty take (count, avg, min, max)?
SELECT
    difficulty,
    count(*) AS configs,
    round(avg(oracle_calls), 2) AS avg_oracle_calls,
    min(oracle_calls) AS min_oracle_calls,
    max(oracle_calls) AS max_oracle_calls,
    round(avg(source_oracle_calls), 2) AS avg_source_oracle_calls
FROM task_configs
WHERE kept
GROUP BY difficulty
ORDER BY CASE difficulty
    WHEN 'easy' THEN 1
    WHEN 'medium' THEN 2
    WHEN 'hard' THEN 3
    ELSE 4
END, difficulty;
