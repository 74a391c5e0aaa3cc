# rate-limiting, local policy, a limit per client IP never reached (every
# request counts, none is refused); nginx proxies without a limit.
tollgate_extra() {
  cat <<'YAML'
plugins:
- name: rate-limiting
  config:
    policy: local
    limit_by: ip
    hour: 1000000000
YAML
}
