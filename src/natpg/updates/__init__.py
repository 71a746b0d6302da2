"""The actor-update rules behind one interface (:class:`ActorUpdate`); :func:`make_update` builds one from a config.

Each rule asks a score kernel (:mod:`natpg.scores`) for its rows, turns them into a
direction and writes θ through one flat-parameter helper (:mod:`natpg.flat`).

=============  ==========================================  =====================
algo           update                                      class
=============  ==========================================  =====================
``ac-sgd``     ``θ ← θ + η g``                              :class:`SGDUpdate`
``ac-adam``    Adam on ``-(1/N) Σ log π A``                 :class:`AdamUpdate`
``ac-cg``      ``θ ← θ + η CG(F + λ_cg I, g)``              :class:`NaturalCGUpdate`
``smac``       ``θ ← θ + η (λI + ℓ̄ℓ̄ᵀ)⁻¹ g``                :class:`ShermanMorrisonUpdate`
``woodbury``   ``θ ← θ + η (λI + UUᵀ)⁻¹ g``                 :class:`WoodburyUpdate`
=============  ==========================================  =====================

Every rule but ac-adam produces a direction ``x`` and leaves the step length to its
:class:`StepSize` (:mod:`natpg.updates.step_size`): ``η = actor_lr``, or TRPO's scaling of ``x``
to a target KL, either optionally with a backtracking line search.
"""

from __future__ import annotations

from natpg.config import (
    AdamSettings,
    Algo,
    CGSettings,
    SGDSettings,
    SmacSettings,
    StepSizeSettings,
    TrainConfig,
    WoodburySettings,
)
from natpg.policies import Actor
from natpg.updates.adam import AdamUpdate
from natpg.updates.base import ActorBatch, ActorUpdate, ScoreRule, UpdateInfo
from natpg.updates.natural_cg import NaturalCGUpdate
from natpg.updates.schedule import MiniBatchSchedule
from natpg.updates.sgd import SGDUpdate
from natpg.updates.sherman_morrison import ShermanMorrisonUpdate
from natpg.updates.step_size import StepSize
from natpg.updates.woodbury import WoodburyUpdate


def make_update(cfg: TrainConfig, actor: Actor) -> ActorUpdate:
    """The update rule ``cfg.algo`` for ``actor``, with the config's hyper-parameters and schedule.

    With ``cfg.batch_size`` (M) or ``cfg.actor_epochs`` (E) set, the rule is wrapped in a
    :class:`MiniBatchSchedule`: E passes over the batch in T/M consecutive mini-batches.
    smac walks its own mini-batches (its B = 1 fast path); the defaults return the bare rule.
    """
    rule = _make_rule(cfg, actor)
    walks_itself = cfg.algo is Algo.SMAC
    batch_size = None if walks_itself else cfg.batch_size
    if batch_size is None and cfg.actor_epochs == 1:
        return rule
    return MiniBatchSchedule(rule, batch_size, cfg.actor_epochs)


def _make_rule(cfg: TrainConfig, actor: Actor) -> ActorUpdate:
    """The bare rule, from the common settings and ``cfg.algo_settings``, the section of the algorithm."""
    s = cfg.algo_settings
    if isinstance(s, AdamSettings):
        return AdamUpdate(actor, cfg.actor_lr, ent_coef=cfg.ent_coef)
    assert isinstance(s, StepSizeSettings)
    size = StepSize.from_settings(s)
    if isinstance(s, SGDSettings):
        return SGDUpdate(actor, cfg.actor_lr, ent_coef=cfg.ent_coef, step_size=size)
    if isinstance(s, CGSettings):
        return NaturalCGUpdate(actor, cfg.actor_lr, s.cg_damping, s.cg_iters, ent_coef=cfg.ent_coef, step_size=size)
    if isinstance(s, SmacSettings):
        return ShermanMorrisonUpdate(actor, cfg.actor_lr, s.damping, cfg.batch_size, ent_coef=cfg.ent_coef,
                                     step_size=size)
    if isinstance(s, WoodburySettings):
        return WoodburyUpdate(actor, cfg.actor_lr, s.damping, s.rank, ent_coef=cfg.ent_coef, step_size=size)
    raise AssertionError(f"unhandled algo {cfg.algo}")  # pragma: no cover


__all__ = [
    "ActorBatch", "ActorUpdate", "ScoreRule", "UpdateInfo", "make_update", "MiniBatchSchedule",
    "SGDUpdate", "AdamUpdate", "NaturalCGUpdate", "ShermanMorrisonUpdate", "WoodburyUpdate", "StepSize",
]
