#!/usr/bin/env bash
# The S3 real-client suite (tests/s3/, see tests/s3/README.md).
#
#   scripts/s3-tests.sh [pytest args]         against $S3_ENDPOINT (default
#                                             http://127.0.0.1:3000, toasty's
#                                             local cluster) with
#                                             $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY
#   scripts/s3-tests.sh --moto [pytest args]  self-check against moto's S3
#                                             server on a free loopback port,
#                                             then test_auth.py again against a
#                                             moto with IAM auth on
#
# Installs what it needs: a venv with pinned boto3, awscli v1, pytest and
# moto under target/s3-venv, and rclone from Debian if it is missing.
# S3_TESTS_BIG=1 adds the 4 GiB streaming test. Exit status non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${S3_VENV:-target/s3-venv}
# Pinned so a run means the same thing next month. awscli 1.x carries its own
# botocore, so it does not fight the boto3/botocore pins. awscrt gives botocore
# CRC32C and CRC64NVME.
pins=(
  "boto3==1.44.5" "botocore==1.44.5" "awscrt==0.38.0" "s3transfer==0.19.3"
  "awscli==1.46.2" "pytest==9.2.0" "requests==2.34.2" "urllib3==2.8.0"
  "moto[server]==5.2.5"
)

moto=0
if [ "${1:-}" = "--moto" ]; then moto=1; shift; fi

step() { echo "== $*"; }

install_python_tools() {
  local stamp="$venv/.s3-tests-pins"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${pins[*]}" ]; then return; fi
  step "installing ${pins[*]} into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$stamp"
}

install_rclone() {
  command -v rclone >/dev/null 2>&1 && return
  step "installing rclone (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q rclone >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q rclone >/dev/null; }
}

free_port() {
  "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

moto_pids=()
stop_motos() {
  for pid in "${moto_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}
trap stop_motos EXIT

# start_moto LOG [ENV=VALUE...]: starts moto_server on a free loopback port,
# waits until it answers, sets $moto_endpoint.
start_moto() {
  local log=$1; shift
  local port; port=$(free_port)
  env "$@" "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$log" 2>&1 &
  moto_pids+=($!)
  moto_endpoint="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    if "$venv/bin/python" -c "import urllib.request, sys; urllib.request.urlopen('$moto_endpoint/moto-api/')" 2>/dev/null; then
      return
    fi
    sleep 0.2
  done
  echo "moto did not start on $moto_endpoint; see $log" >&2
  exit 1
}

summaries=()
# run_suite NAME PYTEST_ARGS...: runs pytest, keeps its closing line.
run_suite() {
  local name=$1; shift
  local log="target/s3-tests-$name.log"
  step "suite: $name against $S3_ENDPOINT (S3_TARGET=$S3_TARGET)"
  set +e
  "$venv/bin/python" -m pytest "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  set -e
  local closing
  closing=$(grep -E '(passed|failed|error|skipped|xfailed|deselected).* in [0-9.]+s' "$log" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//')
  summaries+=("$name: ${closing:-no pytest summary} (exit $status)")
  return "$status"
}

start=$(date +%s)
install_python_tools
install_rclone
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
unset AWS_PROFILE
overall=0

if [ "$moto" = 1 ]; then
  start_moto target/s3-moto.log
  export S3_ENDPOINT=$moto_endpoint S3_TARGET=moto
  export AWS_ACCESS_KEY_ID=suite-access-key AWS_SECRET_ACCESS_KEY=suite-secret-key
  run_suite moto tests/s3 "$@" || overall=1

  # moto checks signatures only with IAM auth on: run the auth tests again
  # there, so that their negative cases are seen to fail for the right reason.
  start_moto target/s3-moto-auth.log INITIAL_NO_AUTH_ACTION_COUNT=3
  read -r AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY < <("$venv/bin/python" tests/s3/moto_iam_keys.py "$moto_endpoint")
  export S3_ENDPOINT=$moto_endpoint S3_TARGET=moto-auth AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  run_suite moto-auth tests/s3/test_auth.py "$@" || overall=1
else
  export S3_ENDPOINT=${S3_ENDPOINT:-http://127.0.0.1:3000} S3_TARGET=${S3_TARGET:-toasty}
  if [ -z "${AWS_ACCESS_KEY_ID:-}" ] || [ -z "${AWS_SECRET_ACCESS_KEY:-}" ]; then
    echo "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for $S3_ENDPOINT (or use --moto)" >&2
    exit 2
  fi
  run_suite "$S3_TARGET" tests/s3 "$@" || overall=1
fi

echo
step "summary ($(( $(date +%s) - start )) s)"
for line in "${summaries[@]}"; do echo "  $line"; done
exit "$overall"
