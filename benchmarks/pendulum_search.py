"""Can SMAC learn Pendulum-v1 in 100 k steps? A sweep of the settings that usually matter on this task.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pendulum_search.py [--seeds 100,101,102] [--force]

Pendulum-v1 with Gymnasium's own 200-step episodes (as ``make_vec_env`` gives them to the SB3 class), SMAC
trained by natpg's trainer (``natpg.train``, the ``paper-inferred`` preset plus each setting below) and, for
the observation-free reward normalisation SB3 users reach for, by the SB3 class inside ``VecNormalize``
(4 envs). Score: the mean return of the last 10 training episodes (trainer) or of 10 deterministic
evaluation episodes (SB3 class). A uniformly random policy is scored the same way for reference.

Results: ``benchmarks/results/pendulum_search.json`` (a rerun skips the runs already there unless
``--force``) and the table ``benchmarks/results/pendulum_search.md``.
"""

from __future__ import annotations

import argparse
import statistics

from common import RESULTS, ResultFile, provenance, random_return, set_one_thread

ENV = "Pendulum-v1"
KL = {"step_rule": "kl"}
TRAINER_SETTINGS: list[tuple[int, dict]] = [
    (100_000, {}),
    (100_000, {"n_steps": 200}),
    (100_000, {"actor_lr": 0.02}),
    (100_000, {"gamma": 0.9}),
    (100_000, {"gamma": 0.9, "n_steps": 200}),
    (100_000, {"gamma": 0.9, "n_steps": 200, "actor_lr": 0.02}),
    (100_000, {"gamma": 0.9, "normalize_advantages": True, "actor_lr": 0.05}),
    (100_000, {"gamma": 0.9, "normalize_reward": True}),
    (100_000, {**KL, "target_kl": 0.03}),
    (100_000, {**KL, "target_kl": 0.03, "gamma": 0.9}),
    (100_000, {**KL, "target_kl": 0.03, "gamma": 0.9, "n_steps": 200}),
    (100_000, {**KL, "target_kl": 0.1, "gamma": 0.9}),
    (100_000, {**KL, "target_kl": 0.1, "gamma": 0.95, "n_steps": 200}),
    (100_000, {**KL, "target_kl": 0.01, "gamma": 0.9, "batch_size": 100, "actor_epochs": 4}),
    (100_000, {**KL, "target_kl": 0.003, "gamma": 0.9, "batch_size": 100, "actor_epochs": 10}),
    (500_000, {**KL, "target_kl": 0.03}),
    (500_000, {**KL, "target_kl": 0.03, "gamma": 0.9}),
    (500_000, {"gamma": 0.9}),
    # the same budget and KL step for SMAC's rank-1 Fisher, Woodbury's rank 8 and AC-CG's true Fisher
    (100_000, {**KL, "target_kl": 0.01, "gamma": 0.9}),
    (100_000, {"algo": "woodbury", **KL, "target_kl": 0.01, "gamma": 0.9}),
    (100_000, {"algo": "ac-cg", **KL, "target_kl": 0.01, "gamma": 0.9}),
    (100_000, {"algo": "ac-cg", **KL, "target_kl": 0.01, "gamma": 0.97}),
    (100_000, {"algo": "ac-cg", **KL, "target_kl": 0.01}),
]
"""(budget, fields over ``paper-inferred``) for natpg's trainer; ``algo`` (default ``smac``) picks the update."""
SB3_SETTINGS: list[dict] = [{}, {"n_steps": 200}, {"n_steps": 200, "actor_lr": 0.05}]
"""Arguments of the SB3 class (defaults otherwise), trained inside ``VecNormalize(norm_obs=False)``, 100 k steps."""


def label(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "(defaults)"


def run_trainer(seed: int, budget: int, settings: dict) -> float:
    from natpg import make_config, train

    fields = {"total_steps": budget, "max_episode_steps": 200, **settings}
    algo = fields.pop("algo", "smac")
    return train(make_config(ENV, algo, seed, fields, preset="paper-inferred")).final_return


def run_sb3(seed: int, settings: dict) -> float:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    from natpg.integrations.sb3 import SMAC

    env = VecNormalize(make_vec_env(ENV, n_envs=4, seed=seed), norm_obs=False, norm_reward=True)
    model = SMAC("MlpPolicy", env, seed=seed, **settings)
    model.learn(100_000)
    mean, _ = evaluate_policy(model, make_vec_env(ENV, n_envs=1, seed=10_000 + seed), n_eval_episodes=10,
                              deterministic=True)
    return float(mean)


def run_random(seed: int) -> float:
    return random_return(ENV, episodes=10, cap=200, seed=seed)


def table(records: list[dict], environment: dict) -> str:
    groups: dict[tuple[str, int, str], list[float]] = {}
    for r in records:
        groups.setdefault((r["how"], r["budget"], r["settings"]), []).append(r["score"])
    rows = ["| how | budget | settings | seeds | score (mean ± std) | best seed |", "|---|---:|---|---:|---:|---:|"]
    for (how, budget, settings), scores in groups.items():
        rows.append(f"| {how} | {budget:,} | {settings} | {len(scores)} | {statistics.fmean(scores):.1f} ± "
                    f"{statistics.pstdev(scores):.1f} | {max(scores):.1f} |")
    return "\n".join([
        "# SMAC on Pendulum-v1 (200-step episodes): settings against budget (last rows: Woodbury and AC-CG)", "",
        "Trainer rows: `natpg.train` under `paper-inferred` plus the settings, mean return of the last 10 training "
        "episodes. SB3 rows: natpg's SB3 class in `VecNormalize(norm_obs=False)`, 10 deterministic evaluation "
        "episodes. Random: uniform actions, 10 episodes. A policy that swings up and holds scores about −150 to −200.",
        "", *rows, "", provenance(environment), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="100,101,102")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    set_one_thread()
    results = ResultFile("pendulum_search", force=args.force)
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [("random", 0, {})] + [("trainer", b, s) for b, s in TRAINER_SETTINGS] + [("sb3", 100_000, s)
                                                                                   for s in SB3_SETTINGS]
    for how, budget, settings in jobs:
        for seed in seeds:
            key = {"how": how, "budget": budget, "settings": label(settings), "seed": seed}
            if results.has(**key):
                continue
            score = (run_random(seed) if how == "random" else run_trainer(seed, budget, settings) if how == "trainer"
                     else run_sb3(seed, settings))
            results.add({**key, "score": score})
    first = results.environments[0]
    md = table(results.records, first)
    (RESULTS / "pendulum_search.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
