"""Render benchmark JSON results as the markdown tables of docs/benchmarks.md.

    python benchmarks/report.py benchmarks/results/*.json > docs/benchmarks-tables.md
"""

from __future__ import annotations

import json
import sys


def step_table(data: dict) -> str:
    if "data" not in data:  # the older format: dense data, no memory figures
        lines = ["| size | batch | model type | first call (s) | step (ms) | × hand-written |",
                 "|---|---|---|---:|---:|---:|"]
        for row in data["rows"]:
            lines.append(f"| {row['size']} | {row['batch_size']} | {row['model_type']} | "
                         f"{row['first_call_s']:.2f} | {row['step_ms']:.2f} | "
                         f"{row['ratio_to_handwritten']:.2f} |")
        return "\n".join(lines)
    lines = [f"Parameterization `{data['meta']['parameterization']}`; K = 3 for mixtures.", "",
             "| size | density | non-zeros | max count | histogram entries | sparse input (MB) "
             "| statistics (MB) | idle process RSS (MB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for d in data["data"]:
        lines.append(f"| {d['size']} | {d['density']:.1%} | {d['nnz']:,} | {d['max_count']:.0f} | "
                     f"{d['histogram_entries']:,} | {d['sparse_input_mb']:.1f} | "
                     f"{d['statistics_mb']:.2f} | {d['idle_rss_mb']:.0f} |")
    lines += ["", "| size | batch | model type | setup (s) | first call (s) | step (ms) "
              "| speed-up vs hand-written | peak RSS (MB) |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for row in data["rows"]:
        if "step_ms" not in row:
            lines.append(f"| {row['size']} | {row['batch_size']} | {row['model_type']} | "
                         f"{row.get('error', 'failed')} | | | | |")
            continue
        speedup = f"{row['speedup']:.1f}×" if row.get("speedup") else "—"
        lines.append(f"| {row['size']} | {row['batch_size']} | {row['model_type']} | "
                     f"{row['setup_s']:.1f} | {row['first_call_s']:.1f} | "
                     f"{row['step_ms']:.3g} | {speedup} | {row['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def recovery_table(data: dict) -> str:
    lines = [f"{data['cells']} cells × {data['genes']} genes, {data['steps']} steps, "
             f"batch {data['batch_size'] or 'full'}.", "",
             "| model type | parameterization | r error | Δp = abs(p − p_true) | p̂ error "
             "| gate error | assignment | time (s) |", "|---|---|---:|---:|---:|---:|---:|---:|"]

    def cell(row, key, fmt):
        return fmt.format(row[key]) if key in row else "—"

    for row in data["rows"]:
        lines.append(
            f"| {row['model_type']} | {row['parameterization']} | "
            f"{cell(row, 'r_error', '{:.1%}')} | {cell(row, 'p_error', '{:.4f}')} | "
            f"{cell(row, 'p_hat_error', '{:.1%}')} | {cell(row, 'gate_error', '{:.3f}')} | "
            f"{cell(row, 'assignment_accuracy', '{:.1%}')} | {row['seconds']:.0f} |")
    return "\n".join(lines)


def analyses_table(data: dict) -> str:
    lines = [f"`nbdm_mix`, K = 3, {data['size']}, {data['steps']} SVI steps, "
             f"S = {data['samples']} posterior draws; each method in its own process after "
             "`scribe.load` (the `load` row is that baseline).", "",
             "| method | call | first call (s) | second call (s) | peak RSS (MB) |",
             "|---|---|---:|---:|---:|"]
    for row in data["rows"]:
        if "first_s" not in row:
            lines.append(f"| {row['method']} | `{row['call']}` | {row['error']} | | "
                         f"{row['peak_rss_mb']:.0f} |")
            continue
        lines.append(f"| {row['method']} | `{row['call']}` | {row['first_s']:.2f} | "
                     f"{row['second_s']:.2f} | {row['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(paths: list[str]) -> None:
    for path in paths:
        with open(path) as handle:
            data = json.load(handle)
        print(f"### {path}\n")
        if "cells" in data:
            print(recovery_table(data))
        elif "samples" in data:
            print(analyses_table(data))
        else:
            print(step_table(data))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
