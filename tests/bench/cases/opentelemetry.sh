# opentelemetry, global, every trace sampled, spans exported over OTLP/HTTP to
# the benchmark's upstream nginx (its `return 200` accepts the POSTs, so the
# exporter's work is counted, not a receiver's). Each request carries a
# caller traceparent, so extraction, injection and both spans are measured.
# nginx has no tracing here: compare with the plain case's CPU per request.
WRK_ARGS=(-H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
tollgate_extra() {
  cat <<YAML
plugins:
- name: opentelemetry
  config:
    traces_endpoint: http://127.0.0.1:${UPSTREAM_PORT}/v1/traces
    sampling_rate: 1
YAML
}
