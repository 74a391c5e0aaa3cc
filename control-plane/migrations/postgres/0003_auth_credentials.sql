-- Credentials of the key-auth, basic-auth and acl plugins. A key-auth key is
-- a secret: its UNIQUE column holds the SHA-256 of the key (hex), the key
-- itself is sealed in `data`. `acls.cache_key` is consumer|group, unique.

CREATE TABLE keyauth_credentials (
    id TEXT COLLATE "C" PRIMARY KEY,
    key TEXT UNIQUE,
    consumer_id TEXT COLLATE "C" NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);
CREATE INDEX keyauth_credentials_consumer_id_idx ON keyauth_credentials (consumer_id);

CREATE TABLE basicauth_credentials (
    id TEXT COLLATE "C" PRIMARY KEY,
    username TEXT UNIQUE,
    consumer_id TEXT COLLATE "C" NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);
CREATE INDEX basicauth_credentials_consumer_id_idx ON basicauth_credentials (consumer_id);

CREATE TABLE acls (
    id TEXT COLLATE "C" PRIMARY KEY,
    consumer_id TEXT COLLATE "C" NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
    cache_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    tags TEXT,
    data TEXT NOT NULL
);
CREATE INDEX acls_consumer_id_idx ON acls (consumer_id);
