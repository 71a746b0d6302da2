"""SMAC inside Stable-Baselines3 on CartPole-v1 with its defaults: learn, evaluate, save, load (needs ``natpg[sb3]``).

    python examples/sb3_cartpole.py --steps 50000 --seed 0
"""

import argparse

import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from natpg.integrations.sb3 import SMAC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--save", default=None, help="save the model to this path (a .zip)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    env = make_vec_env("CartPole-v1", n_envs=args.n_envs, seed=args.seed)
    model = SMAC("MlpPolicy", env, seed=args.seed)  # n_steps = 1000 samples per rollout over all the envs
    model.learn(total_timesteps=args.steps)
    mean, std = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1, seed=10_000 + args.seed),
                                n_eval_episodes=10, deterministic=True)
    print(f"SMAC (SB3) on CartPole-v1, seed {args.seed}, {args.steps} steps on {args.n_envs} envs: "
          f"deterministic return {mean:.1f} ± {std:.1f} over 10 episodes")
    if args.save:
        model.save(args.save)
        SMAC.load(args.save)


if __name__ == "__main__":
    main()
