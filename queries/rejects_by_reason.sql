-- Why were items dropped: rejects per stage and reason, with one example entity each?
SELECT
    stage,
    reason,
    count(*) AS rejects,
    min(entity_id) AS example_entity_id
FROM rejects
GROUP BY stage, reason
ORDER BY rejects DESC, stage, reason;
