"""Benchmark 2 (and 3): end-to-end training throughput against the simulator's own speed.

For each task and backend, in the same run and interleaved round-robin (so a
busy neighbour slows every contender alike), measure environment steps per second of

* ``raw``: stepping the same vector env (n_envs = 1, 1000-step cap) with
  pre-drawn random actions: the simulator's own limit for this loop;
* ``natpg``: ``natpg train`` (the preset's SMAC, T = 1000, 64-64 tanh MLPs,
  one torch thread), timed over the training loop as ``TrainResult.wall_time_s``;
* ``sb3-a2c`` (Gymnasium backend only): Stable-Baselines3's A2C with
  ``n_steps = 1000`` on the same env (64-64 tanh MLP, CPU), timed over ``learn``;
* ``sim`` (MuJoCo tasks, Gymnasium backend only): the physics alone. The env is
  stepped with random actions (reset at episode ends) and only the time inside
  ``MujocoEnv.do_simulation`` (``mj_step`` × frame skip and ``mj_rnePostConstraint``)
  is counted: the ceiling of any single-process agent loop on this simulator, were
  the env's own Python, the policy and the learning all free.

Every sample is written to ``benchmarks/results/throughput.json`` as it is
measured; ``benchmarks/render.py`` takes medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultFile, set_one_thread  # noqa: E402

set_one_thread()

import torch  # noqa: E402

from natpg.config import EnvBackend  # noqa: E402
from natpg.envs import make_vector_env  # noqa: E402
from natpg.presets import make_config  # noqa: E402
from natpg.trainer import Trainer  # noqa: E402

ENVS = ["CartPole-v1", "HalfCheetah-v5", "Hopper-v5", "Humanoid-v5"]
BACKENDS = [b.value for b in EnvBackend]
KINDS = ["raw", "natpg", "sb3-a2c", "sim"]


def measure_raw(env_id: str, backend: str, steps: int, seed: int) -> float:
    cfg = make_config(env_id, "smac", seed, {"env_backend": backend})
    envs = make_vector_env(cfg)
    try:
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
        actions = [envs.action_space.sample() for _ in range(steps)]
        t0 = time.perf_counter()
        for a in actions:
            envs.step(a)
        return time.perf_counter() - t0
    finally:
        envs.close()


def measure_sim(env_id: str, steps: int, seed: int) -> float | None:
    """Seconds spent inside MuJoCo's physics over ``steps`` random-action steps; ``None`` without MuJoCo."""
    import gymnasium as gym
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

    env = gym.make(env_id, max_episode_steps=1000)
    try:
        inner = env.unwrapped
        if not isinstance(inner, MujocoEnv):
            return None
        spent = 0.0
        simulate = inner.do_simulation

        def timed(action, n_frames):
            nonlocal spent
            t0 = time.perf_counter()
            simulate(action, n_frames)
            spent += time.perf_counter() - t0

        inner.do_simulation = timed
        env.reset(seed=seed)
        env.action_space.seed(seed)
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        return spent
    finally:
        env.close()


def measure_natpg(env_id: str, backend: str, steps: int, seed: int) -> tuple[float, dict[str, float]]:
    return measure_natpg_config(make_config(env_id, "smac", seed, {"env_backend": backend, "total_steps": steps}))


def measure_natpg_config(cfg) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``Trainer(cfg).run()`` (training loop only) and its rollout/update split."""
    split = {"rollout_s": 0.0, "update_s": 0.0}

    def on_iteration(row: dict) -> None:
        split["rollout_s"] += row["time/rollout_s"]
        split["update_s"] += row["time/update_s"]

    result = Trainer(cfg).run(None, on_iteration=on_iteration)
    return result.wall_time_s, split


def measure_sb3(env_id: str, steps: int, seed: int) -> float:
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([lambda: gym.make(env_id, max_episode_steps=1000)])
    model = A2C("MlpPolicy", env, n_steps=1000, device="cpu", seed=seed, verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - t0
    env.close()
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", nargs="+", default=ENVS)
    ap.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    ap.add_argument("--kinds", nargs="+", default=KINDS, choices=KINDS)
    ap.add_argument("--steps", type=int, default=5000, help="environment steps per sample (a multiple of 1000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--name", default="throughput")
    ap.add_argument("--force", action="store_true", help="drop the earlier samples of this results file")
    args = ap.parse_args()
    results = ResultFile(args.name, force=args.force)
    for rep in range(args.repeats):
        for env_id in args.envs:
            for backend in args.backends:
                for kind in args.kinds:
                    if kind in ("sb3-a2c", "sim") and backend != "gymnasium":
                        continue
                    key = {"env_id": env_id, "backend": backend, "kind": kind, "repeat": rep}
                    if results.has(**key):
                        continue
                    torch.manual_seed(rep)
                    extra: dict = {}
                    if kind == "raw":
                        wall = measure_raw(env_id, backend, args.steps, rep)
                    elif kind == "natpg":
                        wall, extra = measure_natpg(env_id, backend, args.steps, rep)
                    elif kind == "sim":
                        wall = measure_sim(env_id, args.steps, rep)
                        if wall is None:  # not a MuJoCo task
                            continue
                    else:
                        wall = measure_sb3(env_id, args.steps, rep)
                    results.add({**key, "steps": args.steps, "wall_s": wall, "steps_per_s": args.steps / wall,
                                 "load_average": [round(x, 2) for x in os.getloadavg()],
                                 **extra})


if __name__ == "__main__":
    main()
