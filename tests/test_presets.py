"""The paper's Table 2 (docs/method.md §4) as data: every env × algorithm loads, and overrides work field by field."""

from __future__ import annotations

import pytest

from natpg.config import Algo, CGSettings, ConfigError, SmacSettings, TrainConfig, WoodburySettings, algo_setting_names
from natpg.presets import check_table, load_preset, make_config, preset_env_ids, preset_extras, preset_names

# The paper's Table 2, transcribed independently of paper.toml: env → (α, SMAC η, SMAC λ, Adam η, SGD η, CG η)
TABLE_2 = {
    "Acrobot-v1": (1e-3, 5e-2, 0.1, 6e-4, 2e-1, 6e-1),
    "CartPole-v1": (1e-3, 5e-3, 0.1, 7e-5, 7e-3, 8e-2),
    "Pendulum-v1": (1e-3, 6e-3, 0.1, 7e-4, 5e-2, 3e-2),
    "HalfCheetah-v5": (1e-4, 5e-3, 1.0, 1e-2, 1e-3, 1e-2),
    "Hopper-v5": (1e-4, 1e-2, 1.0, 1e-4, 1e-3, 1e-2),
    "Swimmer-v5": (1e-4, 3e-2, 1.0, 1e-4, 1e-3, 1e-2),
    "Walker2d-v5": (1e-5, 3e-2, 1.0, 1e-5, 1e-4, 1e-2),
    "Humanoid-v5": (1e-3, 1e-4, 0.01, 3e-4, 1e-3, 9e-1),
    "Pusher-v5": (1e-3, 1.5e-3, 0.01, 2.5e-3, 1e-1, 9e-1),
}


def test_nine_preset_envs():
    assert sorted(preset_env_ids()) == sorted(TABLE_2)
    assert len(preset_names()) == 9


@pytest.mark.parametrize("env_id", sorted(TABLE_2))
def test_preset_matches_spec_table(env_id):
    alpha, smac_eta, smac_lam, adam_eta, sgd_eta, cg_eta = TABLE_2[env_id]
    for algo, eta in [("smac", smac_eta), ("ac-adam", adam_eta), ("ac-sgd", sgd_eta), ("ac-cg", cg_eta)]:
        cfg = make_config(env_id, algo, seed=0)
        assert (cfg.env_id, cfg.algo.value, cfg.actor_lr, cfg.critic_lr) == (env_id, algo, eta, alpha)
        assert (cfg.n_steps, cfg.gamma, cfg.gae_lambda, cfg.max_episode_steps) == (1000, 0.99, 0.9, 1000)
        assert cfg.total_steps >= 500_000
    assert make_config(env_id, "smac").algo_settings == SmacSettings(damping=smac_lam)
    assert make_config(env_id, "woodbury").algo_settings == WoodburySettings(damping=smac_lam, rank=8)
    assert make_config(env_id, "ac-cg").algo_settings == CGSettings(cg_damping=0.1, cg_iters=10)


def test_budgets_follow_the_spec():
    assert make_config("Acrobot", "smac").total_steps == 500_000
    assert make_config("CartPole", "smac").total_steps == 500_000
    assert make_config("Pendulum", "smac").total_steps >= 1_500_000
    assert make_config("HalfCheetah-v5", "smac").total_steps >= 2_000_000


def test_short_names_and_ids_are_the_same_preset():
    assert make_config("cartpole", "smac") == make_config("CartPole-v1", "smac")


def test_woodbury_inherits_smac_step_and_damping():
    w, s = make_config("Hopper-v5", "woodbury"), make_config("Hopper-v5", "smac")
    assert (w.actor_lr, w.algo_settings.damping, w.algo) == (s.actor_lr, s.algo_settings.damping, Algo.WOODBURY)


def test_overrides_field_by_field_with_strings_as_typed():
    cfg = make_config("CartPole-v1", "smac", 3, {"total_steps": "20_000", "damping": "0.5", "hidden_sizes": "32,32",
                                                 "normalize_advantages": "true", "batch_size": "10"})
    assert (cfg.total_steps, cfg.algo_settings.damping, cfg.hidden_sizes, cfg.normalize_advantages, cfg.batch_size) == \
        (20_000, 0.5, (32, 32), True, 10)
    assert cfg.actor_lr == 5e-3  # untouched fields keep the preset


def test_unknown_override_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"unknown setting 'dampng'; did you mean 'damping'\?"):
        make_config("CartPole-v1", "smac", 0, {"dampng": 1.0})


def test_env_without_preset_uses_defaults():
    cfg = make_config("MountainCar-v0", "smac")
    assert cfg.env_id == "MountainCar-v0" and cfg.actor_lr == TrainConfig().actor_lr


def test_load_preset_unknown_env():
    with pytest.raises(ConfigError, match="no preset for env 'CartPol'; did you mean 'CartPole'"):
        load_preset("CartPol", "smac")


def test_config_round_trips_through_dict():
    cfg = make_config("Hopper-v5", "ac-cg", 4, {"hidden_sizes": (32, 16), "step_rule": "kl", "target_kl": 0.01})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


# ----------------------------------------------------------------------------- preset sets

READING = {"critic_epochs": 7, "critic_batch_size": 50, "normalize_reward": True}


@pytest.fixture
def inferred(monkeypatch):
    """A stand-in ``paper-inferred.toml`` holding one reading (the machinery, not the adopted values)."""
    import natpg.presets as presets

    real = presets._load
    monkeypatch.setattr(presets, "_load", lambda name: {"common": dict(READING)} if name == "paper-inferred"
                        else real(name))
    presets._table.cache_clear()
    yield READING
    presets._table.cache_clear()


@pytest.mark.parametrize("env_id", sorted(TABLE_2))
def test_inferred_set_is_the_table_plus_one_global_reading(env_id, inferred):
    """Table 2's step sizes and damping are unchanged; the same extra settings for every env and algorithm."""
    assert preset_extras("paper-inferred") == inferred
    for algo in ("smac", "ac-sgd", "ac-adam", "ac-cg", "woodbury"):
        literal = make_config(env_id, algo, 1)
        cfg = make_config(env_id, algo, 1, preset="paper-inferred")
        assert (literal.preset, cfg.preset) == ("paper", "paper-inferred")
        assert cfg == literal.override(preset="paper-inferred", **inferred)


def test_inferred_set_applies_to_envs_without_a_preset_and_overrides_still_win(inferred):
    cfg = make_config("MountainCar-v0", "smac", 0, {"critic_epochs": 3}, preset="paper-inferred")
    assert (cfg.critic_epochs, cfg.critic_batch_size, cfg.normalize_reward, cfg.preset) == \
        (3, 50, True, "paper-inferred")


def test_run_labels_name_schedule_fields_that_differ_from_the_preset_set(inferred):
    from natpg.experiments.store import variant_label

    cfg = make_config("CartPole-v1", "smac", 0, {"batch_size": 10}, preset="paper-inferred")
    assert variant_label(cfg.to_dict()) == "smac-B10"
    assert variant_label(make_config("CartPole-v1", "ac-sgd", 0, preset="paper-inferred").to_dict()) == "ac-sgd"


def test_unknown_preset_set_is_refused():
    with pytest.raises(ConfigError, match=r"unknown preset 'papr'; allowed: paper, paper-inferred"):
        make_config("CartPole-v1", "smac", preset="papr")
    with pytest.raises(ConfigError, match=r"preset='x' is not a preset set"):
        TrainConfig(preset="x")


# ----------------------------------------------------------------------------- each algorithm only its own settings

def test_every_preset_gives_each_algorithm_only_the_settings_it_reads():
    for env_id in TABLE_2:
        for algo in Algo:
            preset = load_preset(env_id, algo)
            others = [k for k in ("damping", "rank", "cg_damping", "cg_iters") if k in preset
                      and k not in algo_setting_names(algo)]
            assert not others, (env_id, algo.value, others)
    assert load_preset("CartPole", "woodbury")["rank"] == 8 and "rank" not in load_preset("CartPole", "smac")


@pytest.mark.parametrize("table,message", [
    ({"common": {"rank": 8}}, r"x.toml \[common\] sets rank, a woodbury setting; put it under \[algos.woodbury\]"),
    ({"algos": {"smac": {"cg_iters": 5}}}, r"x.toml \[algos.smac\] sets cg_iters, an ac-cg setting that smac does not"),
    ({"envs": {"A": {"env_id": "A-v0", "damping": 0.1}}}, r"x.toml \[envs.A\] sets damping, a smac and woodbury"),
    ({"envs": {"A": {"env_id": "A-v0", "ac-sgd": {"damping": 0.1}}}}, r"\[envs.A.ac-sgd\] sets damping"),
    ({"common": {"dampng": 0.1}}, r"x.toml \[common\] sets 'dampng', which is no setting"),
    ({"common": {"step_rule": "kl"}}, r"x.toml \[common\] sets step_rule, a smac, ac-sgd, ac-cg and woodbury setting; "
                                      r"put it under \[algos.smac\]"),  # ac-adam takes no step-size rule
    ({"algos": {"ac-adam": {"target_kl": 0.01}}}, r"\[algos.ac-adam\] sets target_kl, .* that ac-adam does not read"),
])
def test_a_preset_file_with_a_setting_where_its_algorithm_does_not_read_it_is_refused(table, message):
    with pytest.raises(ConfigError, match=message):
        check_table("x.toml", table)


def test_a_preset_file_may_give_every_direction_rule_the_kl_step_size():
    step = {"step_rule": "kl", "target_kl": 0.01, "backtrack_iters": 10}
    table = {"algos": {a: dict(step) for a in ("smac", "ac-sgd", "ac-cg", "woodbury")},
             "envs": {"A": {"env_id": "A-v0", "smac": dict(step)}}}
    assert check_table("x.toml", table) is table


def test_the_inferred_set_may_hold_every_common_setting_but_no_algorithms(monkeypatch):
    import natpg.presets as presets

    real = presets._load
    reading = {"critic_epochs": 10, "critic_batch_size": 100, "batch_size": 100, "normalize_reward": True,
               "actor_epochs": 2, "normalize_obs": True}
    for common, ok in ((reading, True), ({**reading, "damping": 1.0}, False)):
        monkeypatch.setattr(presets, "_load", lambda name, c=common: {"common": dict(c)} if name == "paper-inferred"
                            else real(name))
        presets._table.cache_clear()
        try:
            if ok:
                cfg = make_config("CartPole-v1", "ac-sgd", preset="paper-inferred")
                assert (cfg.batch_size, cfg.critic_epochs, cfg.actor_epochs) == (100, 10, 2)
            else:
                with pytest.raises(ConfigError, match=r"paper-inferred.toml \[common\] sets damping"):
                    make_config("CartPole-v1", "smac", preset="paper-inferred")
        finally:
            presets._table.cache_clear()
