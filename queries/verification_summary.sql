-- How many environments reached each status (`verified`, or the stage they failed at), by source?
SELECT
    status,
    source,
    count(*) AS environments,
    round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY source), 1) AS pct_of_source
FROM environments
GROUP BY status, source
ORDER BY source, environments DESC, status;
