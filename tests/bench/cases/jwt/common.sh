# Shared by the jwt-* cases: jwt on top of ip-restriction (both global), one
# consumer whose jwt_secrets credential has key `bench-issuer`; wrk sends one
# token (made with PyJWT in case_setup, valid for a day) as a Bearer header.
# JWT_ALG: HS256, RS256 or ES256. nginx does the ip check only (it has no JWT
# verification without a module): compare CPU per request with the plain case.
jwt_case_setup() {
  case "$JWT_ALG" in
    HS256) printf '%s' "bench-secret-0123456789abcdef0123456789" > "$work/jwt-$JWT_ALG.key" ;;
    RS256)
      openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/jwt-$JWT_ALG.key" 2>/dev/null
      openssl pkey -in "$work/jwt-$JWT_ALG.key" -pubout -out "$work/jwt-$JWT_ALG.pub" ;;
    ES256)
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/jwt-$JWT_ALG.key" 2>/dev/null
      openssl pkey -in "$work/jwt-$JWT_ALG.key" -pubout -out "$work/jwt-$JWT_ALG.pub" ;;
  esac
  python3 - "$JWT_ALG" "$work/jwt-$JWT_ALG.key" > "$work/jwt-$JWT_ALG.token" <<'PY'
import sys, time, jwt
alg, key_file = sys.argv[1], sys.argv[2]
key = open(key_file).read()
print(jwt.encode({"iss": "bench-issuer", "exp": int(time.time()) + 86400}, key, algorithm=alg))
PY
}
jwt_wrk_args() {
  WRK_ARGS=(-H "Authorization: Bearer $(cat "$work/jwt-$JWT_ALG.token" 2>/dev/null || true)")
}
# The plugin list items (after a `plugins:` line).
jwt_plugin_items() {
  cat <<'YAML'
- name: ip-restriction
  config:
    allow: ["127.0.0.0/8"]
- name: jwt
  config:
    claims_to_verify: [exp]
YAML
}
jwt_consumers() {
  cat <<'YAML'
consumers:
- username: bench-client
  jwt_secrets:
  - key: bench-issuer
YAML
  echo "    algorithm: $JWT_ALG"
  if [ "$JWT_ALG" = HS256 ]; then
    echo "    secret: $(cat "$work/jwt-$JWT_ALG.key")"
  else
    echo "    rsa_public_key: |"
    sed 's/^/      /' "$work/jwt-$JWT_ALG.pub"
  fi
}
jwt_tollgate_extra() {
  echo "plugins:"
  jwt_plugin_items
  jwt_consumers
}
nginx_extra() {
  echo "    allow 127.0.0.0/8;"
  echo "    deny all;"
}
