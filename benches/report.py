#!/usr/bin/env python3
"""Prints the BENCHMARKS.md tables from criterion's last run (target/criterion): for every
benchmark group, the medians of chatstore, the same-schema floor (`floor`) and the minimal floor
(`minimal`), chatstore's ratio to each floor, and each side's noise (median absolute deviation over
the median, across criterion's samples). A side that did not run shows as —."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
SIDES = ("chatstore", "floor", "minimal")
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


def ratio(sides, floor):
    if "chatstore" not in sides or floor not in sides:
        return "—"
    return f"{sides['chatstore'][0] / sides[floor][0]:.2f}"


order = [
    "append-1",
    "append-1-with-id",
    "append-batch",
    "load-all",
    "tail-50",
    "list-20",
    "page-walk",
    "context-8k",
    "search-rare",
    "search-common",
]
durability = {"full": 0, "normal": 1, "async": 2}


def sort_key(key):
    workload, size = key[1], key[2]
    size_key = (durability[size], 0) if size in durability else (9, int(size) if size.isdigit() else 0)
    return (order.index(workload) if workload in order else 99, workload, size_key)


for backend in sorted({k[0] for k in runs}, key=lambda b: ["sqlite", "postgres", "mysql"].index(b)
                      if b in ("sqlite", "postgres", "mysql") else 9):
    print(
        f"\n| {backend} | size | chatstore | same-schema floor | minimal floor "
        "| ratio to same-schema | ratio to minimal | noise (chatstore / same-schema / minimal) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in sorted((k for k in runs if k[0] == backend), key=sort_key):
        sides = runs[key]
        if "chatstore" not in sides:
            continue
        times = [fmt(sides[s][0]) if s in sides else "—" for s in SIDES]
        noise = " / ".join(f"±{sides[s][1]:.1%}" if s in sides else "—" for s in SIDES)
        print(
            f"| {key[1]} | {key[2]} | {' | '.join(times)} | {ratio(sides, 'floor')} "
            f"| {ratio(sides, 'minimal')} | {noise} |"
        )
