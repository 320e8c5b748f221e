#!/usr/bin/env python3
"""Per-kernel totals of an Nsight Compute timeline, per training step.

usage: bench/ncu_summary.py NCU.csv[.gz] STEPS [TOP]

NCU.csv is `ncu --kernel-name-base demangled --metrics gpu__time_duration.sum --csv` output (as
bench/gpu_checks.sh writes it). Kernels are grouped by the first hax function in their demangled
name (the function whose Kokkos lambda the kernel runs); each line gives the time per step (total
divided by STEPS), the calls per step and the median time per call.
"""
import csv
import gzip
import re
import statistics
import sys
from collections import defaultdict

UNIT_US = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}


def group(name: str) -> str:
    match = re.search(r"(hax::[A-Za-z0-9_:]+?)(?:<|\(|::\{lambda|$)", name)
    return match.group(1) if match else name[:100]


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, steps = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", errors="replace") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu prints its own notes too
    times = defaultdict(list)
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        times[group(row["Kernel Name"])].append(value * UNIT_US.get(row.get("Metric Unit", "nsecond"), 1e-3))
    total = sum(sum(t) for t in times.values())
    calls = sum(len(t) for t in times.values())
    print(f"{calls} kernels, {total / 1e3:.2f} ms in all, {total / 1e3 / steps:.3f} ms per step (÷ {steps})")
    for name, t in sorted(times.items(), key=lambda kv: -sum(kv[1]))[:top]:
        print(f"{sum(t) / steps:9.1f} µs/step {len(t) / steps:7.1f} calls/step  median {statistics.median(t):8.1f} µs  {name}")


if __name__ == "__main__":
    main()
