-- Tollgate control plane schema (SQLite). One table per entity: indexed
-- columns for lookups and constraints, the full validated entity in `data`.

CREATE TABLE config_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;

CREATE TABLE certificates (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);

CREATE TABLE services (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    client_certificate_id TEXT REFERENCES certificates (id) ON DELETE RESTRICT,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);
CREATE INDEX services_client_certificate_id_idx ON services (client_certificate_id);

CREATE TABLE routes (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    service_id TEXT REFERENCES services (id) ON DELETE RESTRICT,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);
CREATE INDEX routes_service_id_idx ON routes (service_id);

CREATE TABLE consumers (
    id TEXT PRIMARY KEY,
    username TEXT UNIQUE,
    custom_id TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);

CREATE TABLE plugins (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    instance_name TEXT UNIQUE,
    route_id TEXT REFERENCES routes (id) ON DELETE CASCADE,
    service_id TEXT REFERENCES services (id) ON DELETE CASCADE,
    consumer_id TEXT REFERENCES consumers (id) ON DELETE CASCADE,
    -- name|route|service|consumer with empty parts for NULL: one plugin per scope.
    cache_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);
CREATE INDEX plugins_route_id_idx ON plugins (route_id);
CREATE INDEX plugins_service_id_idx ON plugins (service_id);
CREATE INDEX plugins_consumer_id_idx ON plugins (consumer_id);

CREATE TABLE jwt_secrets (
    id TEXT PRIMARY KEY,
    key TEXT UNIQUE,
    consumer_id TEXT NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);
CREATE INDEX jwt_secrets_consumer_id_idx ON jwt_secrets (consumer_id);

CREATE TABLE snis (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    certificate_id TEXT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);
CREATE INDEX snis_certificate_id_idx ON snis (certificate_id);

CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    entity_type TEXT,
    entity_id TEXT,
    config_version BIGINT NOT NULL,
    before TEXT,
    after TEXT
);
