-- How do kept configurations divide between train and validation, and how many environments are near-duplicates of another?
SELECT
    s.split,
    count(DISTINCT e.env_id) AS environments,
    count(DISTINCT n.near_duplicate_of) AS duplicate_groups,
    sum(CASE WHEN t.kept THEN 1 ELSE 0 END) AS kept_configs
FROM environments e
LEFT JOIN splits s ON s.env_id = e.env_id
LEFT JOIN near_duplicates n ON n.env_id = e.env_id
LEFT JOIN task_configs t ON t.env_id = e.env_id
GROUP BY s.split
ORDER BY s.split;
