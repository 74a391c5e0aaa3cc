-- Per data plane state, written by whichever control plane the node is
-- connected to, so every control plane on the database can list every node.
-- `data` is the JSON of the registry entry; `last_seen_ms` drives staleness
-- and purging.
CREATE TABLE clustering_data_planes (
    id TEXT COLLATE "C" PRIMARY KEY,
    control_plane_id TEXT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX clustering_data_planes_last_seen_idx ON clustering_data_planes (last_seen_ms);
