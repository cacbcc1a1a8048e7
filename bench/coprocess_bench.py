#!/usr/bin/env python3
"""Chunks/s of `fanflow run` on inproc:// for a trivial Python processor started
per chunk (--exec) against the same work in long-lived copies (--coprocess)
and the built-in sum, in chunks of 10 items. Medians of interleaved
repetitions, all in one run, printed as a Markdown table (bench/README.md).

Usage: bench/coprocess_bench.py FANFLOW [--repetitions 5] [--concurrency 4]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
# The same sum in both shapes: the --exec input is one chunk, the coprocess's one line per chunk.
EXEC = PYTHON + " -c 'import json,sys; print(sum(i[\"value\"] for i in json.load(sys.stdin)[\"items\"]))'"
COPROCESS = PYTHON + " " + os.path.join(ROOT, "examples", "coprocess", "sum.py")


def run(fanflow, items, concurrency, processor):
    cmd = [fanflow, "run", "--source", f"range:{items}:7", "--chunk-size", "10",
           "--concurrency", str(concurrency), "--log-level", "warn"] + processor
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rate = re.search(r"([0-9.]+) chunks/s", out)
    result = re.search(r"result\s+(\S+)", out)
    return float(rate.group(1)), result.group(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("fanflow")
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=4)
    a = p.parse_args()
    cases = [  # name, items, processor flags
        ("--exec (a process per chunk)", 3000, ["--exec", EXEC]),
        ("--coprocess (long-lived copies)", 50000, ["--coprocess", COPROCESS]),
        ("built-in sum", 50000, ["--processor", "sum"]),
    ]
    rates = {name: [] for name, _, _ in cases}
    for _ in range(a.repetitions):
        results = {}
        for name, items, flags in cases:
            rate, result = run(a.fanflow, items, a.concurrency, flags)
            rates[name].append(rate)
            results.setdefault(items, set()).add(result)
        for items, seen in results.items():
            if len(seen) != 1:
                sys.exit(f"the processors disagree on range:{items}:7: {seen}")
    exec_median = statistics.median(rates[cases[0][0]])
    print(f"| processor (chunks of 10, --concurrency {a.concurrency}) | chunks/s | range | vs --exec |")
    print("|---|---|---|---|")
    for name, items, _ in cases:
        r = rates[name]
        m = statistics.median(r)
        print(f"| {name}, {items // 10} chunks | {m:.0f} | {min(r):.0f}-{max(r):.0f} | {m / exec_median:.1f}x |")


if __name__ == "__main__":
    main()
