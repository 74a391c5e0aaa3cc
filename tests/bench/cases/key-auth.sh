# key-auth on top of ip-restriction (both global): one consumer with one key,
# which wrk sends in the `apikey` header. nginx does the ip check and compares
# the header with the key in a map (the closest it comes to a key lookup).
WRK_ARGS=(-H "apikey: bench-key-0123456789abcdef")
tollgate_extra() {
  cat <<'YAML'
plugins:
- name: ip-restriction
  config:
    allow: ["127.0.0.0/8"]
- name: key-auth
consumers:
- username: bench-client
  keyauth_credentials:
  - key: bench-key-0123456789abcdef
YAML
}
nginx_extra() {
  echo "    allow 127.0.0.0/8;"
  echo "    deny all;"
  echo '    if ($http_apikey != "bench-key-0123456789abcdef") { return 401; }'
}
