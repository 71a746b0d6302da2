"""Bad settings are refused up front, with one message naming the value and what is allowed."""

from __future__ import annotations

import json
import re
import warnings

import pytest

from natpg.config import (AdamSettings, Algo, CGSettings, ConfigError, SavedConfigWarning, SGDSettings, SmacSettings,
                          StepRule, TrainConfig, WoodburySettings, upgrade_saved_config)

BAD = [
    ({"actor_lr": 0.0}, r"actor_lr=0.0 must be a finite number > 0"),
    ({"actor_lr": -1e-3}, r"actor_lr=-0.001 must be a finite number > 0"),
    ({"actor_lr": float("nan")}, r"actor_lr=nan must be a finite number > 0"),
    ({"critic_lr": 0.0}, r"critic_lr=0.0 must be"),
    ({"damping": 0.0}, r"damping=0.0 must be a finite number > 0"),
    ({"algo": "woodbury", "damping": -0.1}, r"damping=-0.1 must be"),
    ({"algo": "ac-cg", "cg_damping": float("inf")}, r"cg_damping=inf must be"),
    ({"algo": "ac-cg", "cg_iters": 0}, r"cg_iters=0 must be an integer >= 1"),
    ({"algo": "ac-cg", "backtrack_iters": -1}, r"backtrack_iters=-1 must be an integer >= 0 \(0 = no line search\)"),
    ({"algo": "smac", "backtrack_iters": 2.5}, r"backtrack_iters=2.5 must be an integer"),
    ({"step_rule": "trust-region"}, r"step_rule='trust-region' is not allowed; allowed: fixed, kl"),
    ({"algo": "woodbury", "target_kl": 0.0}, r"target_kl=0.0 must be a finite number > 0"),
    ({"algo": "ac-sgd", "target_kl": float("inf")}, r"target_kl=inf must be a finite number > 0"),
    ({"algo": "ac-cg", "backtrack_ratio": 1.0}, r"backtrack_ratio=1.0 must be in \(0, 1\)"),
    ({"backtrack_ratio": 0.0}, r"backtrack_ratio=0.0 must be in \(0, 1\)"),
    ({"algo": "ac-adam", "step_rule": "kl"}, r"step_rule is a smac, ac-sgd, ac-cg and woodbury setting; "
                                             r"algo=ac-adam does not read it"),
    ({"n_steps": 1000, "n_envs": 3}, r"n_steps \(T\) = 1000 is not divisible by n_envs = 3"),
    ({"batch_size": 3}, r"batch_size \(B\) = 3 must divide n_steps \(T\) = 1000; allowed: 1, 2, 4"),
    ({"batch_size": 2000}, r"batch_size \(B\) = 2000 must divide"),
    ({"algo": "woodbury", "rank": 0}, r"rank=0 must be an integer >= 1"),
    ({"algo": "woodbury", "rank": 2000}, r"rank=2000 must be <= the actor's mini-batch size \(n_steps \(T\) = 1000\)"),
    ({"algo": "woodbury", "rank": 8, "batch_size": 4}, r"rank=8 must be <= the actor's mini-batch size \(batch_size = 4\)"),
    ({"actor_epochs": 0}, r"actor_epochs=0 must be an integer >= 1"),
    ({"critic_epochs": 0}, r"critic_epochs=0 must be an integer >= 1"),
    ({"critic_batch_size": 3}, r"critic_batch_size = 3 must divide n_steps \(T\) = 1000; allowed: 1, 2, 4"),
    ({"critic_batch_size": 0}, r"critic_batch_size = 0 must divide"),
    ({"gamma": 1.5}, r"gamma=1.5 must be in \[0, 1\]"),
    ({"gae_lambda": -0.1}, r"gae_lambda=-0.1 must be in \[0, 1\]"),
    ({"total_steps": 0}, r"total_steps=0 must be an integer >= 1"),
    ({"n_envs": 0}, r"n_envs=0 must be an integer >= 1"),
    ({"seed": -1}, r"seed=-1 must be an integer >= 0"),
    ({"seed": 1.5}, r"seed=1.5 must be an integer"),
    ({"hidden_sizes": (64, 0)}, r"hidden_sizes=\(64, 0\) must be one or more positive integers"),
    ({"algo": "ppo"}, r"unknown algorithm 'ppo'; allowed: smac, ac-sgd, ac-adam, ac-cg, woodbury"),
    ({"vectorization": "threads"}, r"vectorization='threads' is not allowed; allowed: sync, async"),
    ({"algo": "ac-cg", "cg_max_kl": 0.01}, r"cg_max_kl no longer exists; use step_rule=kl with target_kl=δ"),
    ({"algo": "ac-cg", "cg_line_search": True}, r"cg_line_search no longer exists; use backtrack_iters"),
    ({"ent_coef": -1.0}, r"ent_coef=-1.0 must be"),
    ({"max_episode_steps": 0}, r"max_episode_steps=0 must be an integer >= 1 or None"),
]


@pytest.mark.parametrize("changes,message", BAD, ids=[str(c) for c, _ in BAD])
def test_bad_setting_is_refused_with_a_clear_message(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(changes)


def test_string_override_that_is_not_a_number():
    with pytest.raises(ConfigError, match=r"actor_lr='fast' is not a number"):
        TrainConfig().override(actor_lr="fast")


def test_string_override_that_is_not_a_boolean():
    with pytest.raises(ConfigError, match=r"normalize_advantages='maybe' is not a boolean"):
        TrainConfig().override(normalize_advantages="maybe")


# ----------------------------------------------------------------------------- each algorithm's own section

STEP = "step_rule, target_kl, backtrack_iters, backtrack_ratio"
FOREIGN = [  # a setting of another algorithm is refused, naming whose it is and what this one reads
    ("smac", "rank", 32, f"rank is a woodbury setting; algo=smac does not read it (its settings: damping, {STEP})"),
    ("ac-sgd", "damping", 0.3, "damping is a smac and woodbury setting; algo=ac-sgd does not read it "
                               f"(its settings: {STEP})"),
    ("ac-adam", "cg_iters", 5, "cg_iters is an ac-cg setting; algo=ac-adam does not read it "
                               "(it has no settings of its own)"),
    ("ac-cg", "damping", 0.3, "damping is a smac and woodbury setting; algo=ac-cg does not read it "
                              f"(its settings: cg_damping, cg_iters, {STEP})"),
    ("woodbury", "cg_iters", 5, "cg_iters is an ac-cg setting; algo=woodbury does not read it "
                                f"(its settings: damping, rank, {STEP})"),
]


@pytest.mark.parametrize("algo,key,value,message", FOREIGN, ids=[f"{a}-{k}" for a, k, _, _ in FOREIGN])
def test_a_setting_of_another_algorithm_is_refused_naming_it(algo, key, value, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"algo": algo, key: value})
    assert str(err.value).startswith(message)
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig(algo=algo).override(**{key: value})


def test_rank_is_checked_only_for_woodbury_against_its_own_mini_batch():
    """n_steps below the default rank is fine for every rule but woodbury, whose rank it bounds."""
    for algo in ("smac", "ac-sgd", "ac-adam", "ac-cg"):
        assert TrainConfig(algo=algo, n_steps=4, total_steps=8).n_steps == 4
    with pytest.raises(ConfigError, match=r"rank=8 must be <= the actor's mini-batch size \(n_steps \(T\) = 4\)"):
        TrainConfig(algo="woodbury", n_steps=4)
    assert TrainConfig(algo="woodbury", n_steps=4, algo_settings=WoodburySettings(rank=4)).algo_settings.rank == 4


def test_each_algorithm_gets_its_own_section_with_its_defaults():
    assert {a: type(TrainConfig(algo=a).algo_settings) for a in Algo} == {
        Algo.SMAC: SmacSettings, Algo.AC_SGD: SGDSettings, Algo.AC_ADAM: AdamSettings, Algo.AC_CG: CGSettings,
        Algo.WOODBURY: WoodburySettings}
    assert TrainConfig(algo="woodbury").algo_settings == WoodburySettings(damping=0.1, rank=8)
    assert "rank" not in TrainConfig(algo="smac").to_dict() and "damping" not in TrainConfig(algo="ac-sgd").to_dict()
    cg = TrainConfig.from_dict({"algo": "ac-cg", "cg_iters": "20", "step_rule": "KL", "backtrack_iters": "10"})
    assert cg.algo_settings == CGSettings(cg_iters=20, step_rule=StepRule.KL, backtrack_iters=10)
    assert cg.to_dict()["step_rule"] == "kl" and json.loads(json.dumps(cg.to_dict())) == cg.to_dict()
    assert TrainConfig.from_dict(cg.to_dict()) == cg
    assert "step_rule" not in TrainConfig(algo="ac-adam").to_dict()


def test_a_section_validates_itself_and_must_be_its_algorithms():
    with pytest.raises(ConfigError, match=r"rank=0 must be an integer >= 1"):
        WoodburySettings(rank=0)
    with pytest.raises(ConfigError, match=r"damping=0 must be a finite number > 0"):
        SmacSettings(damping=0)
    with pytest.raises(ConfigError, match=r"cg_iters=2.5 must be an integer"):
        CGSettings(cg_iters=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"algo_settings=WoodburySettings is woodbury's section; "
                                          r"algo=smac takes SmacSettings"):
        TrainConfig(algo="smac", algo_settings=WoodburySettings())


def test_changing_the_algorithm_keeps_the_settings_both_read():
    smac = TrainConfig(algo="smac", algo_settings=SmacSettings(damping=0.5))
    assert smac.override(algo="woodbury").algo_settings == WoodburySettings(damping=0.5, rank=8)
    assert smac.override(algo="ac-cg").algo_settings == CGSettings()
    assert smac.override(algo_settings=SmacSettings(damping=2.0)).algo_settings.damping == 2.0


def test_a_config_saved_with_every_algorithms_fields_still_loads():
    """config.json of runs written before the sections held every algorithm's fields, flat."""
    old = {**TrainConfig(algo="smac").to_dict(), "rank": 8, "cg_damping": 0.1, "cg_iters": 10, "cg_max_kl": None,
           "cg_line_search": False, "cg_backtrack_iters": 10}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # at their defaults: dropped silently
        assert upgrade_saved_config(old) == TrainConfig(algo="smac").to_dict()
    with pytest.warns(SavedConfigWarning, match=r"algo=smac sets rank=32, which that algorithm does not read"):
        assert upgrade_saved_config({**old, "rank": 32}) == TrainConfig(algo="smac").to_dict()
    with pytest.raises(ConfigError, match="rank is a woodbury setting"):
        TrainConfig.from_dict(old)  # a config built today may not hold them


def test_a_config_saved_before_the_step_size_rule_loads_with_the_same_step():
    """ac-cg's cg_max_kl / cg_line_search / cg_backtrack_iters became step_rule, target_kl, backtrack_iters."""
    today = TrainConfig(algo="ac-cg").to_dict()
    before = {k: v for k, v in today.items() if k not in ("step_rule", "target_kl", "backtrack_iters", "backtrack_ratio")}
    plain = {**before, "cg_max_kl": None, "cg_line_search": False, "cg_backtrack_iters": 10}
    assert upgrade_saved_config(plain) == today  # the old defaults: today's fixed step, no line search
    trpo = {**plain, "cg_max_kl": 0.02, "cg_line_search": True, "cg_backtrack_iters": 7}
    assert TrainConfig.from_dict(upgrade_saved_config(trpo)).algo_settings == CGSettings(
        step_rule=StepRule.KL, target_kl=0.02, backtrack_iters=7)
    searched = {**plain, "cg_line_search": True}
    assert TrainConfig.from_dict(upgrade_saved_config(searched)).algo_settings == CGSettings(backtrack_iters=10)
    smac = {k: v for k, v in TrainConfig(algo="smac").to_dict().items() if k != "step_rule"}
    assert upgrade_saved_config(smac) == TrainConfig(algo="smac").to_dict()  # a missing setting: its default
    with pytest.warns(SavedConfigWarning, match=r"algo=smac sets cg_max_kl=0.1, which that algorithm does not read"):
        assert upgrade_saved_config({**smac, "cg_max_kl": 0.1}) == TrainConfig(algo="smac").to_dict()


def test_derived_fields():
    cfg = TrainConfig(n_steps=1000, n_envs=4, total_steps=2500)
    assert cfg.steps_per_env == 250 and cfg.n_iterations == 3 and cfg.actor_batch_size == 1000
