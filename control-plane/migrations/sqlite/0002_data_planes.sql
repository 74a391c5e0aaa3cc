-- Per data plane state (see the PostgreSQL migration of the same name).
CREATE TABLE clustering_data_planes (
    id TEXT PRIMARY KEY,
    control_plane_id TEXT NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX clustering_data_planes_last_seen_idx ON clustering_data_planes (last_seen_ms);
