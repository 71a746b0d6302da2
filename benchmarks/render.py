"""Render the benchmark JSON files into Markdown tables (benchmarks/results/SUMMARY.md and README.md).

Only the files under ``benchmarks/results/`` are read: every figure in the
tables can be traced to a measured sample there. ``README.md``'s text between
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` is replaced by the tables.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _machine(data: dict) -> str:
    env = data["environments"][-1]
    v = env["versions"]
    loads = [e["load_average_at_start"][0] for e in data["environments"]]
    return (f"{env['cpu']} ({env['cpu_count']} cores, shared with other jobs: 1-min load "
            f"{min(loads):.1f}–{max(loads):.1f} at start), no GPU, Python {env['python']}, "
            f"torch {v['torch']} CPU, {env['torch_threads']} torch thread")


def update_cost_table(data: dict) -> list[str]:
    recs = data["records"]
    sizes = list(dict.fromkeys(r["size"] for r in recs))
    rules = list(dict.fromkeys(r["rule"] for r in recs))
    by = {(r["size"], r["rule"]): r for r in recs}
    head = "| rule | " + " | ".join(f"d = {by[(s, rules[0])]['d']:,}" for s in sizes) + " | growth 1e4→1e6 (time) | peak extra memory (MiB) |"
    lines = [head, "|---" * (len(sizes) + 3) + "|"]
    for rule in rules:
        cells = []
        for s in sizes:
            r = by.get((s, rule))
            cells.append("–" if r is None else f"{r['median_s'] * 1e3:.1f} ms ({r['ratio_to_ac_sgd']:.2f}×)")
        lo, hi = by.get((sizes[0], rule)), by.get((sizes[-1], rule))
        growth = f"{hi['median_s'] / lo['median_s']:.0f}× for {hi['d'] / lo['d']:.0f}× d" if lo and hi else "–"
        mem = " / ".join(f"{by[(s, rule)]['peak_extra_mib']:.0f}" for s in sizes if (s, rule) in by)
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {growth} | {mem} |")
    if "sgd-kernel" in rules and "smac" in rules:
        ratios = " / ".join(f"{by[(s, 'smac')]['median_s'] / by[(s, 'sgd-kernel')]['median_s']:.2f}×"
                            for s in sizes if (s, "smac") in by and (s, "sgd-kernel") in by)
        lines += ["", "ac-sgd is the usual first-order step: torch autograd's backward of the loss. `sgd-kernel` is a "
                  "reference row, not a training rule: the same plain gradient from the hand-written backward pass "
                  "and contraction that SMAC itself uses. SMAC ÷ sgd-kernel = " + ratios + " (d ≈ 1e4 / 1e5 / 1e6): "
                  "the price of the natural gradient over an equally optimised plain gradient; it tends to 4/3 at "
                  "large d, where the width² layer costs 4 matrix products against 3 (forward, back-propagation, "
                  "one contraction for g and one for ℓ̄)."]
    return lines


def _medians(recs: list[dict], keys: tuple[str, ...], value: str) -> dict:
    groups = defaultdict(list)
    for r in recs:
        groups[tuple(r[k] for k in keys)].append(r[value])
    return {k: (statistics.median(v), len(v)) for k, v in groups.items()}


def throughput_table(data: dict) -> list[str]:
    recs = data["records"]
    sps = _medians(recs, ("env_id", "backend", "kind"), "steps_per_s")
    envs = list(dict.fromkeys(r["env_id"] for r in recs))
    lines = ["| env | raw env (gymnasium) | natpg smac (gymnasium) | natpg / raw | SB3 A2C | natpg / SB3 A2C "
             "| raw env (envpool) | natpg smac (envpool) | natpg / raw (envpool) |",
             "|---|---|---|---|---|---|---|---|---|"]

    def get(env, backend, kind):
        return sps.get((env, backend, kind), (float("nan"), 0))[0]

    for env in envs:
        rg, ng, sb = get(env, "gymnasium", "raw"), get(env, "gymnasium", "natpg"), get(env, "gymnasium", "sb3-a2c")
        re, ne = get(env, "envpool", "raw"), get(env, "envpool", "natpg")
        lines.append(f"| {env} | {rg:,.0f} | {ng:,.0f} | {ng / rg:.0%} | {sb:,.0f} | {ng / sb:.1f}× "
                     f"| {re:,.0f} | {ne:,.0f} | {ne / re:.0%} |")
    n = min(c for _, c in sps.values())
    steps = recs[0]["steps"]
    lines.append("")
    lines.append(f"Steps per second, median of {n} interleaved samples of {steps:,} steps each.")
    sim_envs = [env for env in envs if (env, "gymnasium", "sim") in sps]
    if sim_envs:
        lines += ["", "The simulator's ceiling: steps/s if everything but MuJoCo's physics were free (time inside "
                  "`do_simulation` only), against SB3 A2C on one process as above.", "",
                  "| env | physics only | raw env | natpg smac | SB3 A2C | physics only ÷ SB3 A2C | natpg ÷ SB3 A2C |",
                  "|---|---|---|---|---|---|---|"]
        for env in sim_envs:
            sim, rg = get(env, "gymnasium", "sim"), get(env, "gymnasium", "raw")
            ng, sb = get(env, "gymnasium", "natpg"), get(env, "gymnasium", "sb3-a2c")
            lines.append(f"| {env} | {sim:,.0f} | {rg:,.0f} | {ng:,.0f} | {sb:,.0f} | {sim / sb:.1f}× | {ng / sb:.1f}× |")
    return lines


def single_sample_table(data: dict) -> list[str]:
    recs = data["records"]
    wall = _medians(recs, ("env_id", "batch_size"), "wall_s")
    upd = _medians(recs, ("env_id", "batch_size"), "update_s")
    lines = ["| env | steps | B = 1 wall (update part) | B = 1000 wall (update part) | B=1 / B=1000 | time saved by B = 1000 |",
             "|---|---|---|---|---|---|"]
    for env in dict.fromkeys(r["env_id"] for r in recs):
        (w1, n), (w1000, _) = wall[(env, 1)], wall[(env, 1000)]
        u1, u1000 = upd[(env, 1)][0], upd[(env, 1000)][0]
        lines.append(f"| {env} | {recs[0]['steps']:,} | {w1:.2f} s ({u1:.2f} s) | {w1000:.2f} s ({u1000:.2f} s) "
                     f"| {w1 / w1000:.2f}× | {1 - w1000 / w1:.0%} |")
    lines.append("")
    lines.append(f"Median of {n} interleaved runs each.")
    return lines


def before_after_table(before: dict, after: dict) -> list[str]:
    """Rows ``figure | before | after`` from the ``*_before`` files and the current ones (same scripts)."""
    lines = ["| figure | before (foundation) | after |", "|---|---|---|"]
    if before.get("update_cost") and after.get("update_cost"):
        b = {(r["size"], r["rule"]): r for r in before["update_cost"]["records"]}
        a = {(r["size"], r["rule"]): r for r in after["update_cost"]["records"]}
        for rule in ("smac", "woodbury-k8"):
            for size in ("1e4", "1e5", "1e6"):
                if (size, rule) in b and (size, rule) in a:
                    lines.append(f"| {rule} update at d ≈ {size}, ratio to ac-sgd of the same run "
                                 f"| {b[(size, rule)]['ratio_to_ac_sgd']:.2f}× | {a[(size, rule)]['ratio_to_ac_sgd']:.2f}× |")
    if before.get("throughput") and after.get("throughput"):
        b = _medians(before["throughput"]["records"], ("env_id", "backend", "kind"), "steps_per_s")
        a = _medians(after["throughput"]["records"], ("env_id", "backend", "kind"), "steps_per_s")
        for env in dict.fromkeys(r["env_id"] for r in before["throughput"]["records"]):
            key, raw = (env, "gymnasium", "natpg"), (env, "gymnasium", "raw")
            if key in b and key in a:
                lines.append(f"| natpg smac steps/s on {env} (gymnasium) | {b[key][0]:,.0f} | {a[key][0]:,.0f} |")
                lines.append(f"| … as a share of the raw env's steps/s in the same run "
                             f"| {b[key][0] / b[raw][0]:.0%} | {a[key][0] / a[raw][0]:.0%} |")
    if before.get("single_sample") and after.get("single_sample"):
        b = _medians(before["single_sample"]["records"], ("env_id", "batch_size"), "update_s")
        a = _medians(after["single_sample"]["records"], ("env_id", "batch_size"), "update_s")
        bw = _medians(before["single_sample"]["records"], ("env_id", "batch_size"), "wall_s")
        aw = _medians(after["single_sample"]["records"], ("env_id", "batch_size"), "wall_s")
        steps = after["single_sample"]["records"][0]["steps"]
        for env, bs in b:
            if bs == 1 and (env, 1) in a:
                lines.append(f"| SMAC B = 1 actor-update time for {steps:,} samples on {env} "
                             f"| {b[(env, 1)][0]:.2f} s | {a[(env, 1)][0]:.2f} s |")
                lines.append(f"| … time saved by B = 1000 over B = 1 (whole run) "
                             f"| {1 - bw[(env, 1000)][0] / bw[(env, 1)][0]:.0%} | {1 - aw[(env, 1000)][0] / aw[(env, 1)][0]:.0%} |")
    return lines


def render() -> str:
    out = ["## Speed benchmarks", ""]
    sections = [
        ("update_cost", "1. One actor update against parameter count (T = 1000, ratio to ac-sgd of the same run)",
         update_cost_table, "python benchmarks/update_cost.py"),
        ("throughput", "2–3. Training throughput against the simulator (steps/s, T = 1000, 64-64 MLP)",
         throughput_table, "python benchmarks/throughput.py"),
        ("single_sample", "4. SMAC single-sample form (B = 1) against batch-mean (B = 1000)",
         single_sample_table, "python benchmarks/single_sample.py"),
    ]
    for name, title, fn, cmd in sections:
        data = _load(name)
        if data is None:
            continue
        out += [f"### {title}", "", *fn(data), "",
                f"Command: `OMP_NUM_THREADS=1 {cmd}` (results: `benchmarks/results/{name}.json`). "
                f"Machine: {_machine(data)}.", ""]
    names = ("update_cost", "throughput", "single_sample")
    before = {n: _load(f"{n}_before") for n in names}
    if any(before.values()):
        after = {n: _load(n) for n in names}
        out += ["### Before and after the speed work", "", *before_after_table(before, after), "",
                "Command: `bash benchmarks/before.sh` runs the same scripts on the foundation's source "
                "(commit ef2897e) into `benchmarks/results/*_before.json`. Before and after come from "
                "different runs on the shared machine: compare the ratios, not the absolute figures.", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    text = render()
    (RESULTS / "SUMMARY.md").write_text(text)
    if README.exists():
        readme = README.read_text()
        if BEGIN in readme and END in readme:
            head, rest = readme.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            README.write_text(head + BEGIN + "\n" + text.replace("## Speed benchmarks\n\n", "", 1) + END + tail)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
