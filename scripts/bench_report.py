#!/usr/bin/env python3
"""Writes the benchmark report from the figures the bench binaries recorded.

    scripts/bench_report.py RESULTS.jsonl [--out docs/benchmarks.md] [--previous docs/benchmarks.json]

RESULTS.jsonl holds one JSON object per figure (tests/support/figures.rs writes them). The report
gives the machine, the date, each figure's median and spread, its goal and whether the median
meets it, and the previous run's median for comparison (read from the JSON file beside the
report, which is then replaced by this run's figures).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass

    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "rustc": run("rustc", "--version"),
        "commit": run("git", "rev-parse", "--short", "HEAD"),
        # The report's own files do not count as changes to what was measured.
        "dirty": any(
            line and not line[3:].startswith("docs/benchmarks.")
            for line in run("git", "status", "--porcelain").splitlines()
            if line != "unknown"
        ),
    }


def fmt(value, unit):
    """A human figure: nanoseconds scaled to ns/µs/ms/s, rates to k/M per second."""
    if value is None:
        return "—"
    if unit == "ns":
        for div, name in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
            if abs(value) >= div:
                return f"{value / div:.3g} {name}"
        return f"{value:.3g} ns"
    if unit == "/s":
        for div, name in ((1e6, "M/s"), (1e3, "k/s")):
            if abs(value) >= div:
                return f"{value / div:.3g} {name}"
        return f"{value:.3g}/s"
    if unit == "x":
        return f"{value:.2f}×"
    return f"{value:.4g} {unit}"


def met(fig):
    goal = fig.get("goal")
    if goal is None or not fig.get("n"):
        return ""
    ok = fig["median"] <= goal if fig["better"] == "lower" else fig["median"] >= goal
    return "yes" if ok else "**no**"


def change(fig, prev):
    # A ratio means nothing when either side is zero or negative (memory growth, a difference).
    if prev is None or not prev.get("n") or not fig.get("n"):
        return ""
    if prev["median"] <= 0 or fig["median"] <= 0:
        return ""
    ratio = fig["median"] / prev["median"]
    better = ratio < 1 if fig["better"] == "lower" else ratio > 1
    word = "better" if better else "worse"
    if abs(ratio - 1) < 0.03:
        word = "same"
    return f"{ratio:.2f}× ({word})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--previous", default=None, help="default: the .json beside --out")
    args = ap.parse_args()
    previous_path = args.previous or os.path.splitext(args.out)[0] + ".json"

    figures = []
    with open(args.results, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                figures.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{args.results}:{n}: not a figure: {e}")
    if not figures:
        sys.exit(f"{args.results}: no figures recorded")

    previous = {}
    previous_meta = None
    try:
        with open(previous_path, encoding="utf-8") as f:
            old = json.load(f)
        previous = {fig["id"]: fig for fig in old.get("figures", [])}
        previous_meta = old.get("meta")
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        pass

    meta = machine()
    meta["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    profiles = sorted({fig.get("profile", "release") for fig in figures})
    meta["profile"] = ", ".join(profiles)

    out = []
    out.append("# Benchmarks")
    out.append("")
    out.append(
        "Written by `scripts/bench.sh` (do not edit by hand): every figure of the bench binaries in "
        "`tests/benches/`, built with optimisations and run on real plugins. Median and spread "
        "(p10–p90 of the samples: per operation for latencies, per repetition for throughputs), "
        "the goal beside it, and the previous run's median for comparison."
    )
    out.append("")
    out.append(f"- **Date:** {meta['date']}")
    out.append(
        f"- **Machine:** {meta['cpu']}, {meta['cores']} cores, {meta['memory']}, Linux {meta['kernel']}"
    )
    out.append(
        f"- **Build:** {meta['rustc']}, `{meta['profile']}` profile, commit `{meta['commit']}`"
        + (" with uncommitted changes" if meta["dirty"] else "")
    )
    if previous_meta:
        out.append(
            f"- **Previous run:** {previous_meta.get('date', '?')}, commit `{previous_meta.get('commit', '?')}`"
        )
    else:
        out.append("- **Previous run:** none recorded")
    out.append("")
    out.append("| figure | median | spread (p10–p90) | n | goal | met | previous | change |")
    out.append("|---|---|---|---|---|---|---|---|")
    for fig in figures:
        unit = fig["unit"]
        prev = previous.get(fig["id"])
        goal = fig.get("goal")
        goal_text = ""
        if goal is not None:
            goal_text = ("≤ " if fig["better"] == "lower" else "≥ ") + fmt(goal, unit)
        spread = f"{fmt(fig['p10'], unit)} – {fmt(fig['p90'], unit)}" if fig["n"] > 1 else ""
        out.append(
            f"| {fig['label']} | {fmt(fig['median'], unit) if fig['n'] else '—'} | {spread} | {fig['n']} | {goal_text} "
            f"| {met(fig)} | {fmt(prev['median'], unit) if prev else ''} | {change(fig, prev)} |"
        )
    out.append("")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    with open(previous_path, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "figures": figures}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {args.out} ({len(figures)} figures) and {previous_path}")


if __name__ == "__main__":
    main()
