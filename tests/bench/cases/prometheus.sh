# prometheus, global, every switch on (status codes per consumer, latency
# histograms, bandwidth). nginx has no counterpart: compare the CPU per request
# with the plain case's (target: at most 5% more).
tollgate_extra() {
  cat <<'YAML'
plugins:
- name: prometheus
  config:
    per_consumer: true
    status_code_metrics: true
    latency_metrics: true
    bandwidth_metrics: true
    upstream_health_metrics: true
YAML
}
nginx_extra() {
  :
}
