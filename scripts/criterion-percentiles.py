#!/usr/bin/env python3
"""Median and p99 of criterion's samples for the benches whose id starts with PREFIX.

Criterion keeps, per bench, the time of each sample (a batch of iterations) in
target/criterion/<id>/new/sample.json; the median is criterion's own estimate, the p99 is over
the per-iteration time of each sample. Usage: scripts/criterion-percentiles.py [PREFIX]
"""
import glob
import json
import sys

prefix = sys.argv[1] if len(sys.argv) > 1 else ""
for path in sorted(glob.glob("target/criterion/**/new/sample.json", recursive=True)):
    name = path[len("target/criterion/"):-len("/new/sample.json")]
    if not name.startswith(prefix):
        continue
    sample = json.load(open(path))
    estimates = json.load(open(path.replace("sample.json", "estimates.json")))
    per = sorted(t / i for t, i in zip(sample["times"], sample["iters"]))
    p99 = per[min(len(per) - 1, int(0.99 * len(per)))]
    print(f"{name}: median {estimates['median']['point_estimate'] / 1e6:.3f} ms, "
          f"p99 of {len(per)} samples {p99 / 1e6:.3f} ms")
