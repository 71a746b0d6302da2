"""Environment construction details."""

from __future__ import annotations

import os
import warnings

from natpg.config import TrainConfig
from natpg.envs import make_vector_env


def test_mujoco_env_writes_no_log_file_and_no_bundled_model_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        envs = make_vector_env(TrainConfig(env_id="HalfCheetah-v5", n_envs=1))
        envs.reset(seed=0)
        envs.close()
    assert not os.path.exists(tmp_path / "MUJOCO_LOG.TXT")
    assert not [w for w in caught if "settotalmass" in str(w.message)]


def test_episode_cap_overrides_registered_limit():
    envs = make_vector_env(TrainConfig(env_id="Pendulum-v1", max_episode_steps=1000))
    assert envs.envs[0].spec.max_episode_steps == 1000
    envs.close()
