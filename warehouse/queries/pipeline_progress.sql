-- Where each study stands: runs by status, snapshots written, graphs computed.
SELECT r.study,
       count(*) AS runs,
       count(*) FILTER (WHERE r.status = 'completed') AS completed,
       count(*) FILTER (WHERE r.status = 'diverged') AS diverged,
       count(*) FILTER (WHERE r.status IN ('failed', 'pending')) AS failed_or_pending,
       round(sum(r.train_seconds), 1) AS train_seconds,
       any_value(g.snapshots) AS snapshots,
       any_value(g.graphs_done) AS graphs_done,
       any_value(g.graphs_failed) AS graphs_failed,
       round(any_value(g.snapshot_bytes) / 1e6, 1) AS snapshot_mb
FROM runs r
LEFT JOIN graph_progress g USING (study)
GROUP BY r.study
ORDER BY r.study;
