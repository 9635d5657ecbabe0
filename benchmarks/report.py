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
        second = "—" if row.get("second_s") is None else f"{row['second_s']:.2f}"
        lines.append(f"| {row['method']} | `{row['call']}` | {row['first_s']:.2f} | "
                     f"{second} | {row['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def time_to_fit_table(data: dict) -> str:
    """Simulated fits with the defaults (and the fixed-step reference), then real counts."""

    def pct(row, key):
        return f"{row[key]:.1%}" if row.get(key) is not None else "—"

    def num(row, key, fmt="{:.3f}"):
        return fmt.format(row[key]) if row.get(key) is not None else "—"

    simulated = [r for r in data["rows"] if "size" in r]
    real = [r for r in data["rows"] if "data" in r]
    lines = []
    if simulated:
        lines += ["| model type | param. | density | batch | load | wall (s) | steps | converged "
                  "| r error "
                  "| Δp / p̂ error | gate error | ARI | r cov. | gate cov. | p̂ cov. "
                  "| reference: steps, wall (s), r error, Δp / p̂ error | peak RSS (MB) |",
                  "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for row in simulated:
            if "error" in row:
                lines.append(f"| {row['model_type']} | | | | | {row['error']} |" + " |" * 11)
                continue
            p_err = (pct(row, "p_hat_error") if "p_hat_error" in row
                     else num(row, "p_error", "{:.4f}"))
            # Rows before the batch and load were recorded: full batch, load unknown.
            load = "–".join(f"{x:g}" for x in row["load"]) if row.get("load") else "—"
            ref = row.get("reference")
            ref_text = "—" if not ref else (
                f"{ref['steps']}, {ref['seconds']:.0f}, {pct(ref, 'r_error')}, "
                + (pct(ref, "p_hat_error") if "p_hat_error" in ref
                   else num(ref, "p_error", "{:.4f}")))
            lines.append(
                f"| {row['model_type']} | {row['parameterization']} | {row['density']:.1%} | "
                f"{row.get('batch_size') or 'all'} | {load} | {row['seconds']:.1f} | "
                f"{row['n_steps_run']} | {row['converged']} | "
                f"{pct(row, 'r_error')} | {p_err} | {num(row, 'gate_error')} | "
                f"{num(row, 'ari')} | {pct(row, 'r_coverage')} | {pct(row, 'gate_coverage')} | "
                f"{pct(row, 'p_hat_coverage')} | {ref_text} | {row['peak_rss_mb']:.0f} |")
    if real:
        lines += ["", f"Real counts: {real[0]['data']}, {real[0]['cells']} cells × "
                  f"{real[0]['genes']} genes ({real[0]['expressed_genes']} expressed); share of "
                  "expressed genes whose observed statistic lies in the central 90 % band of "
                  "100 posterior-predictive replicates.", "",
                  "| model type | wall (s) | steps | converged | mean | variance | zero fraction "
                  "| all three |", "|---|---:|---:|---|---:|---:|---:|---:|"]
        for row in real:
            if "error" in row:
                lines.append(f"| {row['model_type']} | {row['error']} | | | | | | |")
                continue
            lines.append(
                f"| {row['model_type']} | {row['seconds']:.1f} | {row['n_steps_run']} | "
                f"{row['converged']} | {pct(row, 'mean_in_band')} | "
                f"{pct(row, 'variance_in_band')} | {pct(row, 'zero_fraction_in_band')} | "
                f"{pct(row, 'all_in_band')} |")
    return "\n".join(lines)


def likelihood_step_table(data: dict) -> str:
    """benchmarks/likelihood_step.py: the likelihood's value and gradient per step."""
    lines = ["| model type | size | non-zeros | batch | batch capacity | full (ms) | batch (ms) "
             "| of which gather (ms) | full / batch | load |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in data["rows"]:
        lines.append(f"| {row['model_type']} | {row['size']} | {row['nnz']:,} | "
                     f"{row['batch_size']} | {row['batch_capacity'][0]:,} | "
                     f"{row['full_ms']:.0f} | {row['batch_ms']:.0f} | "
                     f"{row['batch_gather_ms']:.0f} | {row['full_over_batch']:.1f}× | "
                     f"{row['load']:.1f} |")
    return "\n".join(lines)


def xla_ops_table(data: dict) -> str:
    """benchmarks/xla_cpu_ops.py: indexing primitives at a mixture step's size."""
    lines = [f"{data['nnz']:,} entries, K = {data['components']}, load "
             f"{data['load'][0]:.1f}–{data['load'][1]:.1f}.", "",
             "| operation | ms |", "|---|---:|"]
    lines += [f"| {row['operation']} | {row['ms']:.1f} |" for row in data["rows"]]
    return "\n".join(lines)


def main(paths: list[str]) -> None:
    for path in paths:
        with open(path) as handle:
            data = json.load(handle)
        print(f"### {path}\n")
        if data.get("time_to_fit"):
            print(time_to_fit_table(data))
        elif data.get("likelihood_step"):
            print(likelihood_step_table(data))
        elif "components" in data and "nnz" in data:
            print(xla_ops_table(data))
        elif "cells" in data:
            print(recovery_table(data))
        elif "samples" in data:
            print(analyses_table(data))
        else:
            print(step_table(data))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
