#!/usr/bin/env bash
# The whole test suite: the one command the README gives and CI runs.
# Installs what it needs (cargo-fuzz for the nightly fuzz smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step "build (sim profile: optimised, assertions and overflow checks on)"
cargo build --profile sim --bins

step "unit, property, scripted and simulator tests"
cargo test --profile sim --workspace

step "broken variants: each deliberate bug must be caught"
cargo test --profile sim --features sim-bugs --test broken_variants

step "fresh simulator seeds derived from the commit"
commit=$(git rev-parse HEAD 2>/dev/null || echo 0000000000000000)
base=$(( 0x${commit:0:12} ))
count=${TOASTY_FRESH_SEEDS:-200}
# A fixed count (not a time box), so a commit's seeds are the same on every
# machine and a failure replays exactly. Two processes, one per core: every
# fault at R=3 x N=2, and R=5 x N=1. Then quiet seeds, which are fast. Any
# violation fails CI and prints the command that replays it.
./target/sim/toasty-sim --seeds "$base..$(( base + count ))" > target/fresh-default.log &
default_pid=$!
./target/sim/toasty-sim --seeds "$(( base + 200000 ))..$(( base + 200000 + count ))" --replicas 5 --groups 1 > target/fresh-r5.log &
r5_pid=$!
status=0
wait $default_pid || status=1
wait $r5_pid || status=1
./target/sim/toasty-sim --seeds "$(( base + 400000 ))..$(( base + 400300 ))" --faults quiet > target/fresh-quiet.log || status=1
for log in target/fresh-default.log target/fresh-r5.log target/fresh-quiet.log; do
  echo "$log: $(grep -c '"result":"ok"' "$log") ok, $(grep -c '"result":"violation"' "$log") violations"
  grep -A1 VIOLATION "$log" || true
done
[ "$status" -eq 0 ] || { echo "fresh seeds found a violation"; exit 1; }

step "S3 clients (boto3, aws-cli, rclone) against a fresh local cluster"
# The sim-profile binaries (assertions on) on ports of their own, so a
# cluster started by scripts/run.sh is left alone.
export TOASTY_CLUSTER_DIR="$PWD/target/ci-cluster" TOASTY_BIN="$PWD/target/sim"
export TOASTY_BASE_PORT=15000 TOASTY_METRICS_PORT=15700 TOASTY_S3_PORT=15900
export TOASTY_CHUNK_SEGMENTS=16 TOASTY_SEGMENT_MIB=32 TOASTY_METADATA_MIB=32
# Two groups whatever the CPU count: listings merge groups, and copies and
# multipart cross them.
export TOASTY_CORES=2
rm -rf "$TOASTY_CLUSTER_DIR"
./scripts/cluster.sh start
s3_status=0
(
  . "$TOASTY_CLUSTER_DIR/credentials"
  S3_ENDPOINT="http://127.0.0.1:$TOASTY_S3_PORT" AWS_ACCESS_KEY_ID="$TOASTY_ACCESS_KEY" \
    AWS_SECRET_ACCESS_KEY="$TOASTY_SECRET_KEY" ./scripts/s3-tests.sh -q
) || s3_status=1
# TLS through toasty-proxy (the front end without storage), with a fresh
# self-signed certificate: boto3 over https speaks aws-chunked inside
# chunked transfer coding, which plain http never exercises.
if [ "$s3_status" -eq 0 ]; then
  tls_dir="$TOASTY_CLUSTER_DIR/tls"
  mkdir -p "$tls_dir"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" \
    -days 2 -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
  (
    . "$TOASTY_CLUSTER_DIR/credentials"
    peers="127.0.0.1:$TOASTY_BASE_PORT,127.0.0.1:$((TOASTY_BASE_PORT + 100)),127.0.0.1:$((TOASTY_BASE_PORT + 200))"
    ./target/sim/toasty-proxy --peers "$peers" --cores 2 --http 127.0.0.1:15990 \
      --access-key "$TOASTY_ACCESS_KEY" --secret-key "$TOASTY_SECRET_KEY" \
      --tls-cert "$tls_dir/cert.pem" --tls-key "$tls_dir/key.pem" >"$TOASTY_CLUSTER_DIR/proxy.log" 2>&1 &
    proxy=$!
    trap 'kill $proxy 2>/dev/null || true' EXIT
    sleep 1
    S3_TARGET=toasty S3_ENDPOINT=https://127.0.0.1:15990 AWS_CA_BUNDLE="$tls_dir/cert.pem" \
      REQUESTS_CA_BUNDLE="$tls_dir/cert.pem" AWS_ACCESS_KEY_ID="$TOASTY_ACCESS_KEY" \
      AWS_SECRET_ACCESS_KEY="$TOASTY_SECRET_KEY" \
      target/s3-venv/bin/python -m pytest -q -p no:cacheprovider tests/s3/test_objects.py tests/s3/test_multipart.py
  ) || s3_status=1
fi
./scripts/cluster.sh stop
if [ "$s3_status" -ne 0 ]; then
  echo "S3 client tests failed; node logs:"
  tail -n 20 "$TOASTY_CLUSTER_DIR"/node-*.log
  exit 1
fi
rm -rf "$TOASTY_CLUSTER_DIR"
unset TOASTY_CLUSTER_DIR TOASTY_BIN TOASTY_BASE_PORT TOASTY_METRICS_PORT TOASTY_S3_PORT

step "fuzz smoke runs (fixed seed, bounded time)"
if rustup toolchain list 2>/dev/null | grep -q nightly; then
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
  if [ -x fuzz/run.sh ]; then
    for target in $(ls fuzz/fuzz_targets | sed 's/\.rs$//'); do
      fuzz/run.sh "$target" "${TOASTY_FUZZ_SECONDS:-20}"
    done
  fi
else
  echo "no nightly toolchain: fuzz targets not run (cargo fuzz needs nightly)"
fi

step "done in $(( $(date +%s) - start )) s"
