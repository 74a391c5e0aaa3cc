-- key-auth `ttl` as a column (see the PostgreSQL migration of the same name).
ALTER TABLE keyauth_credentials ADD COLUMN expires_at BIGINT;
UPDATE keyauth_credentials
    SET expires_at = CAST(json_extract(data, '$.expires_at') AS INTEGER)
    WHERE json_extract(data, '$.expires_at') IS NOT NULL;
CREATE INDEX keyauth_credentials_expires_at_idx ON keyauth_credentials (expires_at);
