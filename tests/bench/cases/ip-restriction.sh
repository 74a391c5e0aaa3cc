# ip-restriction allowing loopback, global; nginx does the same with allow/deny.
tollgate_extra() {
  cat <<'YAML'
plugins:
- name: ip-restriction
  config:
    allow: ["127.0.0.0/8"]
YAML
}
nginx_extra() {
  echo "    allow 127.0.0.0/8;"
  echo "    deny all;"
}
