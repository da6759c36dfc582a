-- For each environment, which oracle candidate was chosen, and how each candidate did (smoke test, cells passed, total calls)?
SELECT
    e.env_name,
    e.status,
    e.oracle_candidate AS chosen,
    o.candidate,
    c.smoke_test,
    sum(CASE WHEN o.verdict = 'pass' THEN 1 ELSE 0 END) AS cells_passed,
    count(*) AS cells,
    sum(o.oracle_calls) AS total_calls
FROM oracle_runs o
JOIN environments e ON e.env_id = o.env_id
LEFT JOIN oracle_candidates c ON c.env_id = o.env_id AND c.candidate = o.candidate
GROUP BY e.env_name, e.status, e.oracle_candidate, o.candidate, c.smoke_test
ORDER BY e.env_name, o.candidate;
