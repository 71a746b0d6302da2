"""PPO in one file (plain PyTorch + Gymnasium), with Adam or with natpg's natural-gradient preconditioner.

The same script runs a discrete task (CartPole-v1: categorical policy) and a continuous one
(HalfCheetah-v5, Hopper-v5: diagonal Gaussian); ``--precond smac`` adds natpg's
Sherman–Morrison preconditioner to the actor's gradient. The lines that do it are marked
``# natpg``: build the preconditioner, keep the graph in ``backward``, and call
``precond.step(log_probs)`` before clipping and ``optimizer.step()``.

    python examples/ppo.py --env CartPole-v1 --precond none
    python examples/ppo.py --env CartPole-v1 --precond smac
    python examples/ppo.py --env HalfCheetah-v5 --precond smac --total-steps 200000
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal

from natpg.optim import ShermanMorrisonPreconditioner


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--precond", choices=["none", "smac"], default="none", help="precondition the actor's gradient")
    p.add_argument("--damping", type=float, default=0.1, help="λ of the preconditioner")
    p.add_argument("--total-steps", type=int, default=100_000)
    p.add_argument("--max-episode-steps", type=int, default=None, help="episode cap (default: the env's own)")
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--num-steps", type=int, default=128, help="steps per env per rollout")
    p.add_argument("--num-minibatches", type=int, default=4)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=2.5e-4, help="Adam's learning rate (annealed to 0)")
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--clip-coef", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.0)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def layer(n_in: int, n_out: int, std: float = 2 ** 0.5) -> nn.Linear:
    lin = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.zeros_(lin.bias)
    return lin


def mlp(n_in: int, n_out: int, std: float) -> nn.Sequential:
    return nn.Sequential(layer(n_in, 64), nn.Tanh(), layer(64, 64), nn.Tanh(), layer(64, n_out, std))


class Agent(nn.Module):
    """Separate actor and critic; categorical for Discrete actions, diagonal Gaussian for Box."""

    def __init__(self, obs_dim: int, action_space: gym.Space):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        n_out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.critic = mlp(obs_dim, 1, std=1.0)
        self.actor = mlp(obs_dim, n_out, std=0.01)
        if not self.discrete:
            self.actor.log_std = nn.Parameter(torch.zeros(n_out))  # a parameter of the actor module

    def dist(self, obs: torch.Tensor):
        out = self.actor(obs)
        return Categorical(logits=out) if self.discrete else Independent(Normal(out, self.actor.log_std.exp()), 1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


def make_envs(args):
    cap = {} if args.max_episode_steps is None else {"max_episode_steps": args.max_episode_steps}
    envs = gym.make_vec(args.env, args.num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **cap)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    if isinstance(envs.single_action_space, gym.spaces.Box):
        envs = gym.wrappers.vector.ClipAction(envs)
        envs = gym.wrappers.vector.NormalizeReward(envs, gamma=args.gamma)
    return envs


def main(argv=None) -> list[float]:
    args = parse_args(argv)
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    iterations = args.total_steps // batch_size
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    envs = make_envs(args)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    agent = Agent(obs_dim, envs.single_action_space).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)
    precond = ShermanMorrisonPreconditioner(agent.actor.parameters(), args.damping) if args.precond == "smac" else None  # natpg

    act_shape = envs.single_action_space.shape
    obs_buf = torch.zeros((args.num_steps, args.num_envs, obs_dim), device=device)
    act_buf = torch.zeros((args.num_steps, args.num_envs) + act_shape, device=device)
    logp_buf, rew_buf, term_buf, val_buf = (torch.zeros((args.num_steps, args.num_envs), device=device)
                                            for _ in range(4))
    returns_seen: list[float] = []
    obs, _ = envs.reset(seed=args.seed)
    obs = torch.as_tensor(obs, dtype=torch.float32, device=device)
    start = time.time()
    for iteration in range(1, iterations + 1):
        for group in optimizer.param_groups:  # anneal the learning rate to 0
            group["lr"] = args.lr * (1.0 - (iteration - 1) / iterations)

        # 1. Rollout. Same-step autoreset: a finished episode's last observation is in info["final_obs"].
        for t in range(args.num_steps):
            with torch.no_grad():
                dist = agent.dist(obs)
                action = dist.sample()
                logp_buf[t], val_buf[t] = dist.log_prob(action), agent.value(obs)
            obs_buf[t], act_buf[t] = obs, action
            next_obs, reward, terminated, truncated, info = envs.step(action.cpu().numpy())
            reward = torch.as_tensor(reward, dtype=torch.float32, device=device)
            idx = np.flatnonzero(truncated & ~terminated)
            if len(idx):  # a time limit is not a termination: bootstrap from V(final observation)
                final = torch.as_tensor(np.stack(info["final_obs"][idx]), dtype=torch.float32, device=device)
                with torch.no_grad():
                    reward[idx] += args.gamma * agent.value(final)
            rew_buf[t], term_buf[t] = reward, torch.as_tensor(terminated | truncated, dtype=torch.float32)
            obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
            if "episode" in info:
                returns_seen += info["episode"]["r"][info["_episode"]].tolist()

        # 2. GAE, cut at every episode end (a truncation's tail value is already in its reward).
        with torch.no_grad():
            next_value = agent.value(obs)
            adv = torch.zeros_like(rew_buf)
            running = torch.zeros(args.num_envs, device=device)
            for t in reversed(range(args.num_steps)):
                nv = next_value if t == args.num_steps - 1 else val_buf[t + 1]
                delta = rew_buf[t] + args.gamma * nv * (1 - term_buf[t]) - val_buf[t]
                running = delta + args.gamma * args.gae_lambda * (1 - term_buf[t]) * running
                adv[t] = running
            ret = adv + val_buf

        # 3. PPO epochs over shuffled minibatches.
        b_obs, b_act = obs_buf.reshape(batch_size, obs_dim), act_buf.reshape((batch_size,) + act_shape)
        b_logp, b_adv, b_ret = logp_buf.reshape(-1), adv.reshape(-1), ret.reshape(-1)
        for _ in range(args.update_epochs):
            for mb in torch.randperm(batch_size, device=device).split(minibatch_size):
                dist = agent.dist(b_obs[mb])
                logp = dist.log_prob(b_act[mb])
                ratio = (logp - b_logp[mb]).exp()
                mb_adv = (b_adv[mb] - b_adv[mb].mean()) / (b_adv[mb].std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                v_loss = 0.5 * (agent.value(b_obs[mb]) - b_ret[mb]).pow(2).mean()
                loss = pg_loss - args.ent_coef * dist.entropy().mean() + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward(retain_graph=precond is not None)  # natpg: precond.step needs logp's graph
                if precond is not None:  # natpg
                    precond.step(logp)  # natpg: actor .grad ← (λI + ℓ̄ℓ̄ᵀ)⁻¹ .grad
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

        recent = np.mean(returns_seen[-10:]) if returns_seen else float("nan")
        print(f"iteration {iteration}/{iterations}: steps {iteration * batch_size}, "
              f"return (last 10 episodes) {recent:.1f}, loss {loss.item():.4f}, {time.time() - start:.0f} s")
    envs.close()
    return returns_seen


if __name__ == "__main__":
    main()
