#!/usr/bin/env python3
"""Prints the BENCHMARKS.md tables from criterion's last run (target/criterion): for every
benchmark group, chatstore's and the floor's median, their ratio, and each side's noise (median
absolute deviation over the median, across criterion's samples)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
runs = {}
for bench in root.glob("*/*/*/new/benchmark.json"):
    meta = json.loads(bench.read_text())
    est = json.loads((bench.parent / "estimates.json").read_text())
    backend, workload = meta["group_id"].split("/", 1)
    key = (backend, workload, meta["value_str"])
    median = est["median"]["point_estimate"]
    noise = est["median_abs_dev"]["point_estimate"] / median
    runs.setdefault(key, {})[meta["function_id"]] = (median, noise)


def fmt(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


order = ["append-1", "append-batch", "load-all", "tail-50", "list-20", "page-walk"]
for backend in sorted({k[0] for k in runs}, reverse=True):
    print(f"\n| {backend} | size | chatstore | floor | ratio | noise (chatstore / floor) |")
    print("| --- | --- | --- | --- | --- | --- |")
    keys = [k for k in runs if k[0] == backend]
    keys.sort(key=lambda k: (order.index(k[1]) if k[1] in order else 99, len(k[2]), k[2]))
    for key in keys:
        sides = runs[key]
        if "chatstore" not in sides or "floor" not in sides:
            continue
        (ours, our_noise), (floor, floor_noise) = sides["chatstore"], sides["floor"]
        print(
            f"| {key[1]} | {key[2]} | {fmt(ours)} | {fmt(floor)} | {ours / floor:.2f} "
            f"| ±{our_noise:.1%} / ±{floor_noise:.1%} |"
        )
