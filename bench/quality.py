"""Bench part 5 (issue 19): is every head of the multi-output model at least as good as its own
single-head model and as a per-head gradient-boosted model? `trainer/compare.py` (what `mimo
compare` runs) on the bundled data sets, 3 seeds. Their data and heads are the bundled specs';
their `model:` and `training:` sections are dropped, so the product's defaults are measured.
"""

from __future__ import annotations

import os

import yaml

SEEDS = (1, 2, 3)


def default_settings_spec(path: str, out_dir: str) -> str:
    """A copy of the spec at `path` without its `model:` and `training:` sections, its data path
    made absolute; returns the copy's path."""
    with open(path) as f:
        raw = yaml.safe_load(f)
    raw.pop("model", None)
    raw.pop("training", None)
    raw["data"]["path"] = os.path.join(os.path.dirname(os.path.abspath(path)), raw["data"]["path"])
    os.makedirs(out_dir, exist_ok=True)
    copy = os.path.join(out_dir, os.path.basename(path))
    with open(copy, "w") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    return copy


def summary_lines(results: dict) -> list[str]:
    """The quality table for summary.md: one row per data set and head."""
    lines = [
        "",
        "## Models that win (issue 19): every head vs its single-head model and boosted trees",
        "",
        "Each model fits on train, stops early on validation, and is scored on eval (which chose "
        "nothing); the specs' `model:`/`training:` sections dropped (product defaults). Mean ± sd "
        "over seeds; 'matches' = at most one pooled sd behind.",
        "",
        "| data | head | metric | multi-output | single-head | boosted trees | "
        "multi vs single | multi vs boosted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        for head, h in r["heads"].items():

            def cell(kind, h=h):
                return f"{h[kind]['mean']} ± {h[kind]['sd']}"

            def verdict(rival, h=h):
                v = h[f"vs_{rival}"]
                return f"{v['gap']:+.4f} ({'matches' if v['matches'] else 'loses'})"

            lines.append(
                f"| {label} | {head} | {h['metric']} ({h['better']}) | {cell('multi')} | "
                f"{cell('single')} | {cell('boosted')} | {verdict('single')} | "
                f"{verdict('boosted')} |"
            )
        s = r["seconds"]
        lines.append(
            f"| {label} | (time, s) | | {s['multi']} | {s['single']} (sum) | {s['boosted']} | "
            f"{r['time_multi_over_sum_single']:.2f}x | goal met: {'yes' if r['met'] else 'no'} |"
        )
    return lines
