"""docs/fisher.md: every code block runs (in order, one namespace) and the numbers in its text are right."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import torch

from natpg.curvature import sherman_morrison_solve
from natpg.policies import Actor

DOC = Path(__file__).resolve().parents[1] / "docs" / "fisher.md"


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_code_block_runs_in_order(capsys):
    blocks = _code_blocks(DOC.read_text())
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "fisher_doc"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}[block {i}]", "exec"), namespace)  # noqa: S102 - our own doc
    out = capsys.readouterr().out
    assert "CG used 2 products" in out


def test_worked_example_numbers_in_the_text():
    text = DOC.read_text()
    x = sherman_morrison_solve(torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64),
                               torch.tensor([1.0, -2.0, 2.0], dtype=torch.float64), damping=0.5)
    quoted = "(" + ", ".join(f"{v:.4f}".replace("-", "−") for v in x.tolist()) + ")"
    assert quoted in text, quoted
    assert torch.allclose(x * 19, torch.tensor([42.0, -8.0, -30.0], dtype=torch.float64))
    assert "(42/19, −8/19, −30/19)" in text


def test_quoted_parameter_count_of_a_cartpole_actor():
    actor = Actor(4, gym.spaces.Discrete(2), (64, 64))
    d = sum(p.numel() for p in actor.parameters())
    assert f"`d` = {d:,}" in DOC.read_text()
