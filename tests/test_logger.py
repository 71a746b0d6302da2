"""The logger's writers: any namespaced key, known columns first, atomic header rewrites, TensorBoard scalars."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from natpg.logger import CSVWriter, Logger, TensorBoardWriter
from natpg.rollout import Episode


def lines(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_csv_writer_takes_any_namespaced_key_as_a_new_last_column(tmp_path):
    path = tmp_path / "iterations.csv"
    w = CSVWriter(path, ["iteration", "global_step", "train/skip_reason"])
    w.write(1000, {"iteration": 1, "train/skip_reason": "non-finite step, pᵀFp ≤ 0; \"quoted\""})
    w.write(2000, {"iteration": 2, "custom/anything": 0.1, "train/cg_residual": 3.5e-11})
    w.write(3000, {"iteration": 3, "train/cg_residual": 1e-9, "custom/flag": True})
    w.close()
    assert lines(path) == [
        ["iteration", "global_step", "train/skip_reason", "custom/anything", "train/cg_residual", "custom/flag"],
        ["1", "1000", "non-finite step, pᵀFp ≤ 0; \"quoted\"", "", "", ""],  # the rewrite keeps quoted fields
        ["2", "2000", "", "0.1", "3.5e-11", ""],
        ["3", "3000", "", "", "1e-09", "1"],
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the rewrite's temporary file is gone


def test_csv_writer_appends_to_an_existing_file_under_its_own_header(tmp_path):
    path = tmp_path / "iterations.csv"
    path.write_text("iteration,global_step,x\r\n1,1000,0.5\r\n", encoding="utf-8")
    w = CSVWriter(path, ["iteration", "global_step", "y"])  # the declared columns do not replace the file's
    w.write(2000, {"iteration": 2, "x": 0.25})
    w.write(3000, {"iteration": 3, "train/new": 7})
    w.close()
    assert path.read_bytes().decode() == ("iteration,global_step,x,train/new\r\n1,1000,0.5,\r\n"
                                          "2,2000,0.25,\r\n3,3000,,7\r\n")


def test_tensorboard_writer_takes_any_numeric_namespaced_key(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardWriter(tmp_path)
    tb.write(10, {"custom/anything": 1.5, "train/n_substeps": 4, "train/skip_reason": "text", "iteration": 1,
                  "rollout/flag": True})
    tb.write(20, {"custom/anything": 2.5})
    tb.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["custom/anything", "train/n_substeps"]  # no strings, bools or bare keys
    assert [(e.step, e.value) for e in acc.Scalars("custom/anything")] == [(10, 1.5), (20, 2.5)]


def test_logger_routes_the_three_streams(tmp_path):
    logger = Logger.open(tmp_path, {"env_id": "X"})
    logger.log(1000, {"iteration": 1, "train/extra": 0.5})
    logger.log_episodes([Episode(500, 12.0, 500, True), Episode(900, 3.0, 400, False)])
    assert not (tmp_path / "eval.csv").exists()  # created on first use
    logger.log_eval(1000, {"iteration": 1, "eval/mean_return": 9.0})
    logger.close()
    assert lines(tmp_path / "iterations.csv")[0][-1] == "train/extra"
    assert lines(tmp_path / "episodes.csv") == [["global_step", "return", "length", "terminated"],
                                                ["500", "12.0", "500", "1"], ["900", "3.0", "400", "0"]]
    assert lines(tmp_path / "eval.csv")[1][:3] == ["1", "1000", "9.0"]
    assert (tmp_path / "config.json").exists() and (tmp_path / "system.json").exists()
    nothing = Logger()  # a run without a folder
    nothing.log(1, {"a/b": 1.0})
    nothing.log_episodes([Episode(1, 1.0, 1, True)])
    nothing.log_eval(1, {"eval/x": 1.0})
    nothing.close()
