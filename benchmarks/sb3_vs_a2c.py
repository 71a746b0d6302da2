"""natpg's Stable-Baselines3 classes (SMAC, ACCG) with their defaults against SB3's A2C with its defaults.

For each env, algorithm and seed: ``make_vec_env(env, n_envs=4, seed=seed)``, the algorithm with its
default hyper-parameters (``SMAC("MlpPolicy", env, seed=seed)``, ``ACCG(...)``, ``A2C(...)``; all a
64-64 tanh actor and critic), ``learn(budget)`` on the same budget, then two scores:

* ``train``: the mean return of the last 20 training episodes (SB3's ``Monitor``);
* ``eval``: the mean return of 10 deterministic episodes on a separate env seeded ``10_000 + seed``.

Results go to ``results/sb3_vs_a2c.json`` (rewritten after every run; a rerun skips the runs already
there unless ``--force``) and the table to ``results/sb3_vs_a2c.md``, with the margin each env is
held to: natpg's mean score may trail A2C's by at most ``MARGINS[env]``. ``--set key=value`` changes
an argument of natpg's classes (for choosing defaults; such runs are stored under their settings and
listed apart from the defaults' table).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sb3_vs_a2c.py                     # 5 seeds, both envs, 3 algos
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sb3_vs_a2c.py --table-only        # redraw the table
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from common import RESULTS, ResultFile, provenance, set_one_thread

BUDGETS = {"CartPole-v1": 50_000, "Pendulum-v1": 100_000}
"""Env steps per run, summed over the 4 envs."""
MARGINS = {"CartPole-v1": 50.0, "Pendulum-v1": 150.0}
"""How far natpg's mean score may trail A2C's: 10% of the return range (CartPole 0–500; Pendulum, from a
random policy's ≈ −1,230 to a solved ≈ −150: ≈ 1,100 → 110, rounded up to 150 for A2C's spread)."""
N_ENVS = 4
NAMES = {"smac": "SMAC", "accg": "ACCG", "a2c": "A2C"}
"""The algorithms (``--algos``) and their names in the table."""
TRAIN_EPISODES = 20
EVAL_EPISODES = 10


def commit() -> str:
    """The working tree's commit, with ``-dirty`` when a tracked file under src/ or this script changed."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src", __file__], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def parse_settings(items: list[str]) -> dict:
    """``key=value`` pairs; values are Python literals (``2e-2``, ``None``, ``True``) or strings."""
    out = {}
    for item in items:
        key, _, text = item.partition("=")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def run_one(env_id: str, algo: str, seed: int, budget: int, settings: dict) -> dict:
    """Train one model; return its record (scores, wall-clock)."""
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from natpg.integrations.sb3 import ACCG, SMAC

    env = make_vec_env(env_id, n_envs=N_ENVS, seed=seed)
    cls = {"smac": SMAC, "accg": ACCG, "a2c": A2C}[algo]
    model = cls("MlpPolicy", env, seed=seed, stats_window_size=TRAIN_EPISODES, **settings)
    t0 = time.perf_counter()
    model.learn(budget)
    wall = time.perf_counter() - t0
    train = float(np.mean([e["r"] for e in model.ep_info_buffer]))
    mean, std = evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=10_000 + seed),
                                n_eval_episodes=EVAL_EPISODES, deterministic=True)
    env.close()
    return {"env_id": env_id, "algo": algo, "seed": seed, "budget": budget, "n_envs": N_ENVS,
            "settings": {k: repr(v) for k, v in settings.items()}, "train": train, "eval": float(mean),
            "eval_std": float(std), "wall_s": wall, "commit": commit()}


def _mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f} ± {statistics.pstdev(values):.1f}"


def table(records: list[dict], environment: dict, command: str) -> str:
    """The Markdown table: mean ± std over seeds per env and algorithm, and whether SMAC is within the margin."""
    rows = ["| env | budget | algorithm | seeds | train (last 20 episodes) | eval (10 deterministic) | s per run |",
            "|---|---|---|---|---|---|---|"]
    verdicts = []
    for env_id in BUDGETS:
        by_algo = {a: [r for r in records if r["env_id"] == env_id and r["algo"] == a and not r["settings"]]
                   for a in NAMES}
        for algo, recs in by_algo.items():
            if recs:
                rows.append(f"| {env_id} | {recs[0]['budget']:,} | {NAMES[algo]} | "
                            f"{','.join(str(r['seed']) for r in sorted(recs, key=lambda r: r['seed']))} | "
                            f"{_mean_std([r['train'] for r in recs])} | {_mean_std([r['eval'] for r in recs])} | "
                            f"{statistics.fmean(r['wall_s'] for r in recs):.0f} |")
        for algo in ("smac", "accg"):
            if not (by_algo[algo] and by_algo["a2c"]):
                continue
            for score in ("train", "eval"):
                gap = statistics.fmean(r[score] for r in by_algo[algo]) - statistics.fmean(
                    r[score] for r in by_algo["a2c"])
                ok = "within" if gap >= -MARGINS[env_id] else "OUTSIDE"
                verdicts.append(f"- {env_id} {score}: {NAMES[algo]} − A2C = {gap:+.1f}, {ok} the margin of "
                                f"−{MARGINS[env_id]:.0f}")
    variants = sorted({(r["env_id"], r["algo"], tuple(sorted(r["settings"].items())))
                       for r in records if r["settings"]})
    if variants:
        rows += ["", "natpg's classes with other settings (`--set`):", "",
                 "| env | algorithm | settings | seeds | train (last 20 episodes) | eval (10 deterministic) |",
                 "|---|---|---|---|---|---|"]
        for env_id, algo, items in variants:
            recs = [r for r in records if r["env_id"] == env_id and r["algo"] == algo
                    and tuple(sorted(r["settings"].items())) == items]
            rows.append(f"| {env_id} | {NAMES[algo]} | {', '.join(f'{k}={v}' for k, v in items)} | "
                        f"{','.join(str(r['seed']) for r in recs)} | {_mean_std([r['train'] for r in recs])} | "
                        f"{_mean_std([r['eval'] for r in recs])} |")
    commits = sorted({r["commit"] for r in records})
    return "\n".join([
        "# natpg's SB3 classes (SMAC, ACCG) against SB3's A2C, all with their default hyper-parameters", "",
        f"`make_vec_env(env, n_envs={N_ENVS}, seed=seed)`; mean ± std (ddof = 0) over seeds. natpg's mean may trail "
        f"A2C's by at most the env's margin ({', '.join(f'{k}: {v:.0f}' for k, v in MARGINS.items())}).", "",
        *rows, "", *verdicts, "", provenance(environment, command, commits), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default=",".join(BUDGETS), help="comma-separated env ids (of BUDGETS)")
    parser.add_argument("--algos", default=",".join(NAMES), help=f"comma-separated, of {', '.join(NAMES)}")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        help="an argument of natpg's classes (smac, accg): key=value")
    parser.add_argument("--name", default="sb3_vs_a2c", help="result file name under benchmarks/results/")
    parser.add_argument("--force", action="store_true", help="rerun the runs already stored")
    parser.add_argument("--table-only", action="store_true", help="only redraw the Markdown table")
    args = parser.parse_args()
    set_one_thread()
    results = ResultFile(args.name, force=args.force)
    settings = parse_settings(args.settings)
    if not args.table_only:
        for env_id in args.envs.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                for algo in args.algos.split(","):
                    own = settings if algo != "a2c" else {}
                    key = {"env_id": env_id, "algo": algo, "seed": seed, "budget": BUDGETS[env_id],
                           "settings": {k: repr(v) for k, v in own.items()}}
                    if not results.has(**key):
                        results.add(run_one(env_id, algo, seed, BUDGETS[env_id], own))
    first = results.environments[0] if results.environments else results.environment
    md = table(results.records, first, first.get("command", ""))
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
