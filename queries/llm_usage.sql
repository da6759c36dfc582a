-- What did the LLM stages cost? Requests, samples, tokens and latency per stage and prompt
-- version; `recorded` counts requests answered from a recording (no cost this run).
SELECT
    stage,
    prompt_version,
    model,
    count(*) AS requests,
    sum(cardinality(responses)) AS samples,
    sum(CASE WHEN cached THEN 1 ELSE 0 END) AS recorded,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    round(avg(latency_ms)) AS mean_latency_ms,
    max(attempts) AS max_attempts
FROM llm_calls
GROUP BY stage, prompt_version, model
ORDER BY stage, prompt_version, model;
