"""The single-file examples run: two PPO iterations each, with Adam and with the preconditioner, in-process and tiny."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("env", ["CartPole-v1", "HalfCheetah-v5"])
@pytest.mark.parametrize("precond", ["none", "smac"])
def test_ppo_runs_two_iterations(env, precond, capsys):
    ppo = _load("ppo")
    # An episode cap of 10 steps: episodes end by time limit, and their returns bootstrap from V(final observation).
    returns = ppo.main(["--env", env, "--precond", precond, "--total-steps", "64", "--num-envs", "2", "--num-steps", "16",
                        "--num-minibatches", "2", "--update-epochs", "2", "--max-episode-steps", "10"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("iteration")]
    assert [ln.split(":")[0] for ln in lines] == ["iteration 1/2", "iteration 2/2"]
    assert len(returns) >= 6  # 2 envs × 32 steps, no episode longer than 10
    assert all("nan" not in ln.split("loss")[1] for ln in lines)



@pytest.mark.parametrize("algo,env", [("smac", "CartPole-v1"), ("accg", "Pendulum-v1")])
def test_sb3_example_trains_saves_and_loads(algo, env, tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    sb3 = _load("sb3")
    mean = sb3.main(["--algo", algo, "--env", env, "--steps", "2000", "--save", str(tmp_path / "model.zip")])
    out = capsys.readouterr().out
    assert out.startswith(f"{algo.upper()} (SB3) on {env}, seed 0, 2000 steps on 4 envs") and (tmp_path / "model.zip").exists()
    assert f"deterministic return {mean:.1f}" in out
