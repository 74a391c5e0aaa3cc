# jwt RS256 on top of ip-restriction; see jwt/common.sh.
JWT_ALG=RS256
source tests/bench/cases/jwt/common.sh
case_setup() { jwt_case_setup; }
jwt_wrk_args
tollgate_extra() { jwt_tollgate_extra; }
