"""Environments that fail inside grid workers (spawned processes import this module by env id).

Used as ``"grid_faults:natpg-test/Hang-v0"``: Gymnasium imports the module, which registers them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import gymnasium as gym


class _Fault(gym.Wrapper):
    """CartPole that misbehaves on its ``at``-th step."""

    def __init__(self, fault: str, at: int = 1500):
        super().__init__(gym.make("CartPole-v1", max_episode_steps=1000))
        self.fault, self.at, self.t = fault, at, 0

    def step(self, action):
        self.t += 1
        if self.t == self.at:
            if self.fault == "hang":
                time.sleep(3600)
            if self.fault == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.fault == "sigkill-once":
                # killed on the first attempt only: the marker file (path from the environment) remembers
                marker = Path(os.environ["NATPG_TEST_MARKER"])
                if not marker.exists():
                    marker.write_text("killed once\n")
                    os.kill(os.getpid(), signal.SIGKILL)
        return self.env.step(action)


for _name, _fault in [("Hang", "hang"), ("SigKill", "sigkill"), ("SigKillOnce", "sigkill-once")]:
    _id = f"natpg-test/{_name}-v0"
    if _id not in gym.registry:
        gym.register(_id, entry_point=_Fault, kwargs={"fault": _fault})
