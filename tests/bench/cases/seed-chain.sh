# The seed guide's full chain, global: ip-restriction, jwt (HS256, as the
# guide's PyJWT snippet), rate-limiting local (a limit never reached),
# prometheus with every switch on, file-log. nginx does the ip check only:
# target at least 0.8x nginx's throughput.
JWT_ALG=HS256
source tests/bench/cases/jwt/common.sh
case_setup() { jwt_case_setup; }
jwt_wrk_args
tollgate_extra() {
  echo "plugins:"
  jwt_plugin_items
  cat <<YAML
- name: rate-limiting
  config:
    policy: local
    limit_by: consumer
    hour: 1000000000
- name: prometheus
  config:
    per_consumer: true
    status_code_metrics: true
    latency_metrics: true
    bandwidth_metrics: true
    upstream_health_metrics: true
- name: file-log
  config:
    path: $work/seed-chain-file.log
YAML
  jwt_consumers
}
