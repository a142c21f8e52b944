#!/usr/bin/env bash
# Run one cargo-fuzz target for a bounded time with a fixed seed.
#
#   fuzz/run.sh TARGET SECONDS
#
# Prints one line, `fuzz TARGET: N runs, limit SECONDS s, cov C (ok|FAILED ...)`,
# and exits non-zero if the target crashed or did not build. On a crash the
# input is left in fuzz/artifacts/TARGET/ and the panic, stack and reproduce
# command go to stderr. Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Honours CARGO_TARGET_DIR.
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 TARGET SECONDS" >&2
    exit 2
fi
target=$1
seconds=$2
case "$seconds" in
    '' | *[!0-9]*)
        echo "$0: SECONDS must be a whole number, got '$seconds'" >&2
        exit 2
        ;;
esac

# cargo fuzz looks for fuzz/ below the current directory.
cd "$(dirname "$0")/.."

# fuzz/corpus/TARGET (first) is where libFuzzer keeps what it finds; the
# checked-in fuzz/seeds/TARGET, when present, is only read.
mkdir -p "fuzz/corpus/$target"
corpora=("fuzz/corpus/$target")
if [ -d "fuzz/seeds/$target" ]; then
    corpora+=("fuzz/seeds/$target")
fi

log=$(mktemp "${TMPDIR:-/tmp}/fuzz-$target.XXXXXX.log")

# --debug-assertions: overflow checks and debug_assert! on, as in the `sim`
# profile; a fuzz run that skips them proves less. -seed=1 makes the mutation
# sequence repeatable; the run count still depends on machine speed.
status=0
cargo +nightly fuzz run --debug-assertions "$target" "${corpora[@]}" -- \
    -seed=1 -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?

# libFuzzer prints its final stats on success and from its crash handler.
runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
runs=${runs:-0}
# Edge coverage of the last status line: a drop between runs shows that the
# target stopped reaching code it used to.
cov=$(sed -n 's/.*[[:space:]]cov: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
cov=${cov:-0}

if [ "$status" -ne 0 ]; then
    # The panic, stack and failing input, without the progress lines.
    grep -v -E '^#[0-9]+|^INFO:|NEW_FUNC' "$log" | tail -n 200 >&2 || true
    echo "full log: $log" >&2
    echo "fuzz $target: $runs runs, limit $seconds s, cov $cov (FAILED, exit $status)"
    exit "$status"
fi
rm -f "$log"
echo "fuzz $target: $runs runs, limit $seconds s, cov $cov (ok)"
