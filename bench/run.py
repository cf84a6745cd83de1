#!/usr/bin/env python3
"""Runs every benchmark row for zmp, Python multiprocessing and the raw floor in one go, prints
them side by side with ratios, and writes bench/results.json (the README, Benchmarks, says what a row is).

    python3 bench/run.py --build build/release [--quick] [--only PREFIX]
    python3 bench/run.py --markdown      # the README's table, from bench/results.json

With --only, the rows measured replace their old figures in results.json; the others stay.

Ratios read "how many times better zmp is": for times, python/zmp; for rates and speedups,
zmp/python. Figures drift between runs on a shared 2-core machine; ratios from one run do not.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HIGHER_IS_BETTER = {"ops/s", "x"}


def list_rows(command):
    try:
        out = subprocess.run(command + ["--list"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    rows = {}
    for line in out.splitlines():
        if line.strip():
            name, unit = line.split()
            rows[name] = unit
    return rows


def measure(command, name, quick, timeout):
    args = command + [name] + (["--quick"] if quick else [])
    try:
        out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])["value"]
    except subprocess.TimeoutExpired:
        print(f"  {name}: timed out in {' '.join(command[:2])}", file=sys.stderr)
    except (subprocess.CalledProcessError, ValueError, IndexError, KeyError) as error:
        print(f"  {name}: failed in {' '.join(command[:2])}: {error}", file=sys.stderr)
    return None


def ratio(zmp, other, unit):
    if zmp is None or other is None or zmp <= 0 or other <= 0:
        return None
    return zmp / other if unit in HIGHER_IS_BETTER else other / zmp


def fmt(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


def print_markdown(rows):
    print("| row | unit | zmp | Python | floor | zmp vs Python |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        vs_python = ratio(row["zmp"], row["python"], row["unit"])
        print(f"| `{row['name']}` | {row['unit']} | {fmt(row['zmp'])} | {fmt(row['python'])} | {fmt(row['floor'])} | "
              f"{f'{vs_python:.2f}x' if vs_python else '-'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(HERE, "..", "build", "release"))
    parser.add_argument("--quick", action="store_true", help="fewer iterations: about a minute in all")
    parser.add_argument("--only", default="", help="run only the rows whose name starts with this")
    parser.add_argument("--out", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--markdown", action="store_true", help="print results.json as a Markdown table, measure nothing")
    args = parser.parse_args()
    if args.markdown:
        print_markdown(load(args.out))
        return

    sources = {
        "zmp": [os.path.join(args.build, "bench", "zmp_bench")],
        "python": [sys.executable, os.path.join(HERE, "python_bench.py")],
        "floor": [os.path.join(args.build, "bench", "floor_bench")],
    }
    listed = {source: list_rows(command) for source, command in sources.items()}
    if not listed["zmp"]:
        sys.exit(f"cannot run {sources['zmp'][0]}: build it first (./dev bench does)")
    names = []
    for source in ("zmp", "python", "floor"):
        for name in listed[source]:
            if name not in names and name.startswith(args.only):
                names.append(name)

    timeout = 120 if args.quick else 300
    started = time.monotonic()
    results = []
    header = f"{'row':28} {'unit':6} {'zmp':>9} {'python':>9} {'floor':>9}   {'vs python':>10} {'of floor':>10}"
    print(header)
    print("-" * len(header))
    for name in names:
        unit = next(listed[s][name] for s in ("zmp", "python", "floor") if name in listed[s])
        row = {"name": name, "unit": unit}
        for source, command in sources.items():
            row[source] = measure(command, name, args.quick, timeout) if name in listed[source] else None
        results.append(row)
        vs_python = ratio(row["zmp"], row["python"], unit)
        of_floor = ratio(row["zmp"], row["floor"], unit)  # zmp's share of the floor's performance
        print(f"{name:28} {unit:6} {fmt(row['zmp']):>9} {fmt(row['python']):>9} {fmt(row['floor']):>9}   "
              f"{(f'{vs_python:.2f}x' if vs_python else '-'):>10} {(f'{of_floor:.2f}' if of_floor else '-'):>10}",
              flush=True)
    if args.only:  # keep the rows this run did not measure
        measured = {row["name"] for row in results}
        results = [row for row in load(args.out) if row["name"] not in measured] + results
        results.sort(key=lambda row: row["name"])
    with open(args.out, "w") as out:
        json.dump(results, out, indent=1)
        out.write("\n")
    print(f"\n{len(results)} rows in {time.monotonic() - started:.0f} s; written to {os.path.relpath(args.out)}")
    print("vs python: times python/zmp, rates zmp/python (above 1: zmp is ahead). "
          "of floor: zmp's performance as a share of the floor's (1: zmp is at the floor).")


if __name__ == "__main__":
    main()
