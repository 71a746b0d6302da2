"""SMAC inside Stable-Baselines3 on CartPole-v1: learn, evaluate, save, load (needs ``natpg[sb3]``).

    python examples/sb3_cartpole.py --steps 20000 --seed 0
"""

import argparse

import torch
from stable_baselines3.common.evaluation import evaluate_policy

from natpg.integrations.sb3 import SMAC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--actor-lr", type=float, default=5e-2)
    parser.add_argument("--save", default=None, help="save the model to this path (a .zip)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = SMAC("MlpPolicy", "CartPole-v1", actor_lr=args.actor_lr, damping=0.1, seed=args.seed)
    model.learn(total_timesteps=args.steps)
    mean, std = evaluate_policy(model, model.get_env(), n_eval_episodes=10, deterministic=True)
    print(f"SMAC (SB3) on CartPole-v1, seed {args.seed}, {args.steps} steps: "
          f"deterministic return {mean:.1f} ± {std:.1f} over 10 episodes")
    if args.save:
        model.save(args.save)
        SMAC.load(args.save)


if __name__ == "__main__":
    main()
