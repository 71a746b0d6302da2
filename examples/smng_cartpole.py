"""A complete actor-critic on CartPole-v1 in plain PyTorch + Gymnasium, with natpg's SMNG optimizer.

Only the actor's optimizer comes from natpg: swap ``SMNG`` for ``WoodburyNG`` (same
call) or ``NaturalCG`` (its ``step`` also takes the distribution) to compare.

    python examples/smng_cartpole.py --iterations 100     # 100k steps, about 35 s on one CPU core
"""

import argparse

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from natpg.optim import SMNG


def mlp(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, n_out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--n-steps", type=int, default=1000, help="transitions per iteration (T)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    gamma, gae_lambda = 0.99, 0.9

    torch.manual_seed(args.seed)
    env = gym.make("CartPole-v1", max_episode_steps=1000)
    actor, critic = mlp(4, 2), mlp(4, 1)
    actor_opt = SMNG(actor.parameters(), lr=5e-3, damping=0.1)      # the natural-gradient step
    critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)

    obs, _ = env.reset(seed=args.seed)
    ep_return, finished = 0.0, []
    for it in range(1, args.iterations + 1):
        # 1. Collect T transitions; keep the real next observation for bootstrapping.
        buf = {k: [] for k in ("obs", "act", "rew", "next", "term", "done")}
        for _ in range(args.n_steps):
            with torch.no_grad():
                action = torch.distributions.Categorical(logits=actor(torch.as_tensor(obs))).sample().item()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            for k, v in zip(buf, (obs, action, reward, next_obs, terminated, terminated or truncated)):
                buf[k].append(v)
            ep_return += reward
            obs = next_obs
            if terminated or truncated:
                finished.append(ep_return)
                ep_return = 0.0
                obs, _ = env.reset()
        o = torch.as_tensor(np.array(buf["obs"]), dtype=torch.float32)
        a = torch.as_tensor(buf["act"])

        # 2. GAE: a truncation bootstraps from V(real next state), a termination does not.
        with torch.no_grad():
            v = critic(o).squeeze(-1).numpy()
            nv = critic(torch.as_tensor(np.array(buf["next"]), dtype=torch.float32)).squeeze(-1).numpy()
        adv, running = np.zeros(args.n_steps), 0.0
        for t in reversed(range(args.n_steps)):
            delta = buf["rew"][t] + gamma * nv[t] * (1 - buf["term"][t]) - v[t]
            running = delta + gamma * gae_lambda * (1 - buf["done"][t]) * running
            adv[t] = running
        advantages = torch.as_tensor(adv, dtype=torch.float32)
        returns = advantages + torch.as_tensor(v)

        # 3. Actor: one SMNG step from the per-sample log-probabilities and advantages.
        log_probs = torch.distributions.Categorical(logits=actor(o)).log_prob(a)
        info = actor_opt.step(log_probs, advantages)

        # 4. Critic: one full-batch Adam step on the squared error.
        critic_loss = (returns - critic(o).squeeze(-1)).pow(2).mean()
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()

        recent = np.mean(finished[-10:]) if finished else float("nan")
        print(f"iteration {it}: steps {it * args.n_steps}, return (last 10 episodes) {recent:.1f}, "
              f"update_norm {info.update_norm:.4f}")


if __name__ == "__main__":
    main()
