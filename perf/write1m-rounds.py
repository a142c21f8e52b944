#!/usr/bin/env python3
"""write1m next to fio, in interleaved rounds: on a shared machine only ratios
measured back to back mean anything, and one run of each is noise.

Each round runs fio (1 MiB O_DIRECT sequential write, io_uring, iodepth =
WRITERS, 5 s) and then every variant's `toasty-chunks bench --mode write1m
--writers WRITERS --seconds 5`; a variant's ratio is taken to that round's fio.
Prints every round, then per variant the median ratio, MiB/s, p50 latency,
fdatasyncs/s and CPU ms per GiB written.

Usage: perf/write1m-rounds.py ROUNDS WRITERS VARIANT...
  VARIANT = label[|BIN=path][|--bench-flag value ...]
  e.g. 'before|BIN=target/baseline/release/toasty-chunks'
       'after' 'one-record-batches|--batch-bytes-max 1052672 --batches-in-flight-max 8'
Runs from the repository root; scratch files under target/write1m-rounds.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys

ROUNDS_MAX = 100


def fio(directory, writers):
    out = subprocess.run(
        ["fio", "--name=w", f"--directory={directory}", "--bs=1M", "--rw=write",
         "--ioengine=io_uring", f"--iodepth={writers}", "--direct=1", "--size=2G",
         "--runtime=5", "--time_based", "--output-format=json"],
        capture_output=True, text=True, check=True).stdout
    for name in os.listdir(directory):
        if name.startswith("w."):
            os.remove(os.path.join(directory, name))
    return json.loads(out)["jobs"][0]["write"]["bw_bytes"] / 2**20


def toasty(directory, writers, variant):
    binary, args = "target/release/toasty-chunks", []
    for part in variant[1:]:
        if part.startswith("BIN="):
            binary = part[4:]
        else:
            args += part.split()
    run = subprocess.run(
        [binary, "bench", "--data", os.path.join(directory, "toasty"), "--mode", "write1m",
         "--writers", str(writers), "--seconds", "5", "--segments", "16"] + args,
        capture_output=True, text=True)
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        sys.exit(f"{variant[0]}: {run.stderr.strip()}")
    return json.loads(lines[-1])


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, writers = int(sys.argv[1]), int(sys.argv[2])
    if not 1 <= rounds <= ROUNDS_MAX:
        sys.exit(f"ROUNDS must be in 1..={ROUNDS_MAX}")
    variants = [argument.split("|") for argument in sys.argv[3:]]
    directory = "target/write1m-rounds"
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    results = {variant[0]: [] for variant in variants}
    fios = []
    for number in range(rounds):
        load = open("/proc/loadavg").read().split()[0]
        fio_mib = fio(directory, writers)
        fios.append(fio_mib)
        line = f"round {number} load {load} fio {fio_mib:.0f}"
        for variant in variants:
            result = toasty(directory, writers, variant)
            results[variant[0]].append((result["mib_per_second"] / fio_mib, result))
            line += (f" | {variant[0]} {result['mib_per_second']:.0f} "
                     f"({result['mib_per_second'] / fio_mib:.2f})")
            if "runqueue_wait_ms" in result:
                line += f" rq {result['runqueue_wait_ms']} ms"
        print(line, flush=True)
    shutil.rmtree(directory, ignore_errors=True)
    print(f"fio median {statistics.median(fios):.0f} MiB/s")
    for label, runs in results.items():
        median = lambda values: statistics.median(list(values))
        cpu = [r["cpu_ms"] / (r["bytes_written"] / 2**30) for _, r in runs if "cpu_ms" in r]
        print(f"{label}: median ratio {median(ratio for ratio, _ in runs):.2f}, "
              f"{median(r['mib_per_second'] for _, r in runs):.0f} MiB/s, "
              f"p50 {median(r['latency_us']['p50'] for _, r in runs):.0f} us, "
              f"{median(r['syncs'] / r['seconds'] for _, r in runs):.0f} fdatasyncs/s"
              + (f", CPU {median(cpu):.0f} ms per GiB" if cpu else ""))


if __name__ == "__main__":
    main()
