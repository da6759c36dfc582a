-- Which configurations and environments could be gamed (answer shown to the agent, wrong or empty answers rewarded, oracle reading hidden state, seed-dependent oracle)?
SELECT
    r.reason,
    e.env_name,
    e.source_id,
    r.detail
FROM rejects r
JOIN task_configs t ON t.config_id = r.entity_id
JOIN environments e ON e.env_id = t.env_id
WHERE r.stage = 'verify'
  AND r.reason IN ('answer_in_task_text', 'answer_in_tool_docs', 'answer_in_observe', 'wrong_answer_rewarded',
                   'empty_answer_rewarded', 'oracle_reads_state', 'nondeterministic_trajectory')
ORDER BY r.reason, e.env_name;
