-- Graph stage: one row per snapshot graph (size, timing, error) and its property summaries.

CREATE TABLE IF NOT EXISTS graphs (
    run_id    VARCHAR NOT NULL,
    epoch     INTEGER NOT NULL,
    nodes     INTEGER,
    edges     BIGINT,
    seconds   DOUBLE,               -- build + all properties
    error     VARCHAR,              -- NULL when the snapshot was processed
    PRIMARY KEY (run_id, epoch)
);

-- Statistics of node properties per snapshot and scope.
--   scope:     'graph' (all nodes), 'depth:<b>' (relative-depth bin b of 4, from 0 = input side),
--              'layer:<i>' (layer index i)
--   property:  in_strength | out_strength | strength | eigenvector | pagerank | katz | hub |
--              authority | closeness | betweenness
--   statistic: mean | std | min | max | q10 | q25 | q50 | q75 | q90 | entropy
CREATE TABLE IF NOT EXISTS graph_summaries (
    run_id     VARCHAR NOT NULL,
    epoch      INTEGER NOT NULL,
    scope      VARCHAR NOT NULL,
    property   VARCHAR NOT NULL,
    statistic  VARCHAR NOT NULL,
    value      DOUBLE,
    PRIMARY KEY (run_id, epoch, scope, property, statistic)
);
