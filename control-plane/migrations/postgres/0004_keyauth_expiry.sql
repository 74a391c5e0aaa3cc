-- key-auth `ttl`: the instant a key runs out, in a column of its own so that
-- lists and the snapshot read leave expired keys out in SQL (a page holds
-- `size` live rows) and the control plane's purge finds them by index.
-- `expires_at` is never sealed, so existing rows fill it from their JSON.
ALTER TABLE keyauth_credentials ADD COLUMN expires_at BIGINT;
UPDATE keyauth_credentials
    SET expires_at = CAST(data::json ->> 'expires_at' AS BIGINT)
    WHERE data::json ->> 'expires_at' IS NOT NULL;
CREATE INDEX keyauth_credentials_expires_at_idx ON keyauth_credentials (expires_at);
