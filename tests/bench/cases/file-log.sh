# file-log, global, one JSON line per request to a file in the bench's
# directory; nginx has no counterpart here (access_log off in both configs).
tollgate_extra() {
  cat <<YAML
plugins:
- name: file-log
  config:
    path: $work/file-log-case.log
YAML
}
