"""Checkpoints and resume: atomic files, bit-identical continuation, a SIGKILLed run that resumes cleanly."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import natpg.trainer
from natpg import make_config
from natpg.checkpoint import Checkpointer, checkpoint_path, load_checkpoint, pickle_envs, save_checkpoint, unpickle_envs
from natpg.cli import app
from natpg.config import ConfigError
from natpg.logger import truncate_csv
from natpg.runfolder import remove_temp_files
from natpg.runlog import ITERATION_COLUMNS
from natpg.trainer import Trainer, resume, train

runner = CliRunner()


def rows(path: Path, drop_time: bool = True) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if not (drop_time and k.startswith("time/"))} for r in csv.DictReader(fh)]


def test_resume_is_bit_identical_when_the_envs_can_be_restored(tmp_path):
    # ac-adam carries Adam moments; normalize_obs carries statistics; eval must not disturb the RNG.
    cfg = make_config("CartPole-v1", "ac-adam", 0, {"total_steps": 6000, "checkpoint_every": 2, "normalize_obs": True,
                                                    "eval_every": 2, "eval_episodes": 2})
    whole = train(cfg, tmp_path / "whole")
    train(cfg.override(total_steps=3000), tmp_path / "split")
    resumed = resume(tmp_path / "split", total_steps=6000)
    for name in ("iterations.csv", "episodes.csv", "eval.csv"):
        assert rows(tmp_path / "whole" / name) == rows(tmp_path / "split" / name), name
    assert resumed.returns == whole.returns and resumed.global_step == 6000 and resumed.iterations == 6
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "split")
    for key in ("actor", "critic"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert a["obs_rms"]["count"] == b["obs_rms"]["count"]


def test_resume_is_bit_identical_with_schedules_and_reward_scaling(tmp_path):
    # actor mini-batches and epochs, critic mini-batches (random permutations), running reward statistics
    cfg = make_config("CartPole-v1", "ac-adam", 0, {"total_steps": 6000, "checkpoint_every": 2, "batch_size": 250,
                                                    "actor_epochs": 2, "critic_batch_size": 100, "critic_epochs": 2,
                                                    "normalize_reward": True})
    whole = train(cfg, tmp_path / "whole")
    train(cfg.override(total_steps=3000), tmp_path / "split")
    resumed = resume(tmp_path / "split", total_steps=6000)
    assert rows(tmp_path / "whole" / "iterations.csv") == rows(tmp_path / "split" / "iterations.csv")
    assert resumed.returns == whole.returns
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "split")
    assert all(torch.equal(a["critic"][k], b["critic"][k]) for k in a["critic"])
    assert a["reward_rms"]["var"] == b["reward_rms"]["var"] and a["reward_rms"]["count"] > 5000


def test_resume_without_restorable_envs_resets_them_and_keeps_logs_whole(tmp_path, monkeypatch):
    cfg = make_config("CartPole-v1", "smac", 0, {"total_steps": 5000, "checkpoint_every": 1})
    train(cfg.override(total_steps=2000), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run")["envs"] is not None  # CartPole itself is restorable
    monkeypatch.setattr(natpg.trainer, "pickle_envs", lambda envs, cfg: None)  # as for MuJoCo or async envs
    assert resume(tmp_path / "run", total_steps=3000).global_step == 3000
    assert load_checkpoint(tmp_path / "run")["envs"] is None
    result = resume(tmp_path / "run", total_steps=5000)  # resets the envs instead of restoring them
    assert result.iterations == 5
    iters = rows(tmp_path / "run" / "iterations.csv")
    assert [int(r["iteration"]) for r in iters] == [1, 2, 3, 4, 5]
    steps = [int(r["global_step"]) for r in rows(tmp_path / "run" / "episodes.csv")]
    assert steps == sorted(set(steps)) and steps[-1] <= 5000
    assert len(result.episodes) == len(steps)


def test_an_old_run_folder_resumes_and_gains_the_extras_as_new_columns(tmp_path):
    """A folder whose iterations.csv has only the known columns (natpg before extras were logged) resumes: the
    rule's extras become new last columns, empty in the old rows, with no row lost or repeated."""
    cfg = make_config("CartPole-v1", "smac", 0, {"total_steps": 6000, "checkpoint_every": 1})
    train(cfg, tmp_path / "whole")
    train(cfg.override(total_steps=3000), tmp_path / "old")
    path = tmp_path / "old" / "iterations.csv"
    with open(path, newline="") as fh:
        old_rows = [line[:len(ITERATION_COLUMNS)] for line in csv.reader(fh)]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(old_rows)
    assert next(csv.reader([path.read_text().splitlines()[0]])) == list(ITERATION_COLUMNS)
    resume(tmp_path / "old", total_steps=6000)
    with open(path, newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == [*ITERATION_COLUMNS, "train/n_substeps"] and all(len(line) == len(lines[0]) for line in lines)
    resumed, whole = rows(path), rows(tmp_path / "whole" / "iterations.csv")
    assert [r["train/n_substeps"] for r in resumed] == ["", "", "", "1", "1", "1"]
    assert [{k: r[k] for k in ITERATION_COLUMNS if k in r} for r in resumed] == \
           [{k: r[k] for k in ITERATION_COLUMNS if k in r} for r in whole]


def test_checkpointer_saves_when_due_once_per_iteration_and_loads_back(tmp_path):
    cfg = make_config("CartPole-v1", "smac", 0, {"total_steps": 3000})
    trainer = Trainer(cfg)
    try:
        Checkpointer(None, every=1).save(trainer)  # a run without a folder: nothing to write
        checkpoints = Checkpointer(tmp_path, every=2)
        trainer.train_iteration()
        checkpoints.save_if_due(trainer)
        assert not checkpoint_path(tmp_path).exists() and checkpoints.saved_at == -1
        checkpoints.save(trainer)
        assert checkpoints.path == checkpoint_path(tmp_path) and checkpoints.saved_at == 1
        written = checkpoint_path(tmp_path).stat().st_mtime_ns, checkpoint_path(tmp_path).stat().st_ino
        checkpoints.save_if_unsaved(trainer)  # iteration 1 is on disk already
        assert (checkpoint_path(tmp_path).stat().st_mtime_ns, checkpoint_path(tmp_path).stat().st_ino) == written
        state = checkpoints.load()
        restored = Trainer(cfg)
        restored.load_state_dict(state)
        assert restored.env_state_restored and restored.iteration == 1 and restored.global_step == 1000
        assert all(torch.equal(a, b) for a, b in zip(trainer.actor.parameters(), restored.actor.parameters()))
        # the pickled envs carry their state: from the same RNG states, both go on with the same iteration
        next_rows = []
        for t in (trainer, restored):
            torch.set_rng_state(state["rng"]["torch"])
            np.random.set_state(state["rng"]["numpy"])
            random.setstate(state["rng"]["python"])
            next_rows.append({k: v for k, v in t.train_iteration()[0].items() if not k.startswith("time/")})
        assert next_rows[0] == next_rows[1]
        restored.close()
    finally:
        trainer.close()
    save_checkpoint(tmp_path, {"iteration": 1})
    with pytest.raises(ConfigError, match="is damaged: it lacks 'config'"):
        Checkpointer(tmp_path).load()


def test_pickled_envs_round_trip_with_their_state():
    trainer = Trainer(make_config("CartPole-v1", "smac", 0, {"total_steps": 1000, "n_envs": 2}))
    try:
        trainer.envs.step(np.array([0, 1]))
        data = pickle_envs(trainer.envs, trainer.cfg)
        assert data is not None
        copy = unpickle_envs(data)
        a, b = trainer.envs.step(np.array([1, 1])), copy.step(np.array([1, 1]))
        np.testing.assert_array_equal(a[0], b[0])
        copy.close()
    finally:
        trainer.close()


def test_mujoco_envs_are_not_pickled_because_ezpickle_would_rebuild_them():
    trainer = Trainer(make_config("HalfCheetah-v5", "smac", 0, {"total_steps": 1000}))
    try:
        assert pickle_envs(trainer.envs, trainer.cfg) is None
    finally:
        trainer.close()


def test_truncate_csv_keeps_complete_rows_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "iterations.csv"
    path.write_text("iteration,global_step,x\n1,1000,0.5\n2,2000,0.25\n3,3000,0.1\n4,40")  # last line cut short
    assert truncate_csv(path, "iteration", 2) == 2
    assert path.read_text() == "iteration,global_step,x\n1,1000,0.5\n2,2000,0.25\n"
    short = tmp_path / "short.csv"
    short.write_text("iteration,global_step\n1,1000\n1")  # a partial "1…" row must not survive as iteration 1
    assert truncate_csv(short, "iteration", 5) == 1


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"iteration": 1})
    before = checkpoint_path(tmp_path).read_bytes()

    def broken_save(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, {"iteration": 2})
    assert checkpoint_path(tmp_path).read_bytes() == before
    assert [p.name for p in checkpoint_path(tmp_path).parent.iterdir()] == ["latest.pt"]
    stale = checkpoint_path(tmp_path).parent / ".latest.pt.abc123.tmp"  # as left by a SIGKILL mid-save
    stale.write_bytes(b"half")
    assert load_checkpoint(tmp_path)["iteration"] == 1 and stale.exists()  # readers leave it alone
    remove_temp_files(tmp_path)  # what resume does first
    assert not stale.exists() and checkpoint_path(tmp_path).exists()


def test_sigkilled_run_resumes_and_finishes_with_well_formed_logs(tmp_path):
    out = tmp_path / "run"
    total, n_steps = 12_000, 1000
    cmd = [sys.executable, "-m", "natpg.cli", "train", "--env", "CartPole-v1", "--steps", str(total), "--out", str(out),
           "--checkpoint-every", "2", "--eval-every", "3", "--eval-episodes", "1", "--tensorboard", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:  # kill once a checkpoint exists and the run is past it
            if checkpoint_path(out).exists() and len(rows(out / "iterations.csv")) >= 3:
                break
            assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = len(rows(out / "iterations.csv"))
    assert killed_at < total // n_steps

    done = subprocess.run([sys.executable, "-m", "natpg.cli", "train", "--resume", str(out), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr

    iters = rows(out / "iterations.csv")
    assert [int(r["iteration"]) for r in iters] == list(range(1, total // n_steps + 1))
    assert [int(r["global_step"]) for r in iters] == [n_steps * i for i in range(1, total // n_steps + 1)]
    with open(out / "iterations.csv", newline="") as fh:
        lines = list(csv.reader(fh))
    assert all(len(line) == len(lines[0]) for line in lines)  # no partial or spliced line
    eps = rows(out / "episodes.csv")
    steps = [int(e["global_step"]) for e in eps]
    assert steps == sorted(set(steps)) and steps[-1] <= total
    assert [int(r["iteration"]) for r in rows(out / "eval.csv")] == list(range(3, total // n_steps + 1, 3))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == total and summary["episodes"] == len(eps)
    assert load_checkpoint(out)["iteration"] == total // n_steps

    # TensorBoard: one value per global step on the same axis, the killed run's extra events purged
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tb_steps = [e.step for e in acc.Scalars("train/critic_loss")]
    assert tb_steps == [n_steps * i for i in range(1, total // n_steps + 1)]
    tb_eps = [e.step for e in acc.Scalars("rollout/episode_return")]
    assert tb_eps == steps


def test_resume_cli_errors_are_one_line(tmp_path):
    for args, message in [
        (["--resume", str(tmp_path / "nope")], "does not exist"),
        (["--resume", str(tmp_path)], "has no checkpoint"),
        (["--resume", str(tmp_path), "--algo", "ac-sgd"], "--algo cannot be given with it"),
        ([], "--env is required"),
    ]:
        result = runner.invoke(app, ["train", *args, "--quiet"])
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("natpg: error: ") and message in lines[0], result.stderr


def test_checkpoint_written_at_the_end_even_when_not_due(tmp_path):
    cfg = make_config("CartPole-v1", "smac", 0, {"total_steps": 3000, "checkpoint_every": 0})
    train(cfg, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run")["iteration"] == 3
    with pytest.raises(ConfigError, match="checkpoint_every=-1 must be an integer >= 0"):
        cfg.override(checkpoint_every=-1)


def test_resume_removes_natpgs_temporary_files_and_nothing_else(tmp_path):
    """A SIGKILL mid-write of config.json or summary.json leaves natpg's temporary file behind."""
    train(make_config("CartPole-v1", "ac-sgd", 0, {"total_steps": 2000}), tmp_path)
    stale = [tmp_path / ".config.json.k1l2.tmp", tmp_path / ".summary.json.x9.tmp", tmp_path / ".episodes.csv.a.tmp"]
    for path in stale:
        path.write_text("half")
    mine = tmp_path / ".notes.tmp"
    mine.write_text("user file")
    resume(tmp_path, total_steps=3000)
    assert not any(p.exists() for p in stale) and mine.read_text() == "user file"
