"""natpg's SB3 classes with their defaults: learn, evaluate, save, load (needs ``natpg[sb3]``).

    python examples/sb3.py --algo smac --env CartPole-v1 --steps 50000 --seed 0
    python examples/sb3.py --algo accg --env Pendulum-v1 --steps 100000 --seed 0

``smac``: SMAC's rank-1 Sherman–Morrison step; ``accg``: the natural step by conjugate gradient on
the policy's Fisher, scaled to a target KL (it learns Pendulum-v1 in 100 k steps, SMAC does not).
"""

from __future__ import annotations

import argparse

import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from natpg.integrations.sb3 import ACCG, SMAC

CLASSES = {"smac": SMAC, "accg": ACCG}


def main(argv: list[str] | None = None) -> float:
    """Train, evaluate (10 deterministic episodes on an env seeded 10 000 + seed), optionally save and reload."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=sorted(CLASSES), default="smac")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--save", default=None, help="save the model to this path (a .zip) and load it back")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    cls = CLASSES[args.algo]
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    model = cls("MlpPolicy", env, seed=args.seed)  # n_steps = 1000 samples per rollout over all the envs
    model.learn(total_timesteps=args.steps)
    mean, std = evaluate_policy(model, make_vec_env(args.env, n_envs=1, seed=10_000 + args.seed),
                                n_eval_episodes=10, deterministic=True)
    print(f"{cls.__name__} (SB3) on {args.env}, seed {args.seed}, {args.steps} steps on {args.n_envs} envs: "
          f"deterministic return {mean:.1f} ± {std:.1f} over 10 episodes")
    if args.save:
        model.save(args.save)
        cls.load(args.save)
    return float(mean)


if __name__ == "__main__":
    main()
