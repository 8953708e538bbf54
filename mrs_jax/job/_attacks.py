"""The attack of each attacked mode on a group of images, as the job runs it.

Each returns ``(x_adv [B, H, W, C] numpy, patch top-lefts [B] as [row, col])``:
the PGD and adaptive attacks are one-image device functions ``jax.vmap``-ed over
images, labels and keys; the vote-aware attack is a host driver that takes the
group.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from mrs_jax.attacks import adaptive_patch_attack, patch_attack, vote_patch_attack
from mrs_jax.job._config import JobConfig
from mrs_jax.job._defence import localize_settings
from mrs_jax.job._group import Group


def _budget(config: JobConfig) -> dict[str, Any]:
    """The search budget every attack mode shares (``patch_attack``'s names)."""
    return {
        "num_locations": config.num_locations,
        "steps": config.attack_steps,
        "step_size": config.attack_step_size,
    }


def _standard_attack(group: Group, keys: jax.Array):
    attack = functools.partial(
        patch_attack, group.classify, size=group.config.patch_size,
        **_budget(group.config),
    )  # fmt: skip
    return _vmapped_attack(group, keys, attack)


def _adaptive_attack(group: Group, keys: jax.Array):
    # White-box against the job's own defence: its sigma and dilation.
    config = group.config
    attack = functools.partial(
        adaptive_patch_attack,
        group.classify,
        size=config.patch_size,
        objective=config.adaptive_objective,
        sigma=config.sigma,
        dilation=config.dilation,
        num_occlusions=config.adaptive_occlusions,
        num_noise=config.adaptive_noise_draws,
        **_budget(config),
    )
    return _vmapped_attack(group, keys, attack)


def _vote_attack(group: Group, keys: jax.Array):
    """The vote-aware attack on the whole group (a host driver: its candidates
    are judged by the job's own localiser, and with ``vote_judge="defence"`` by
    its PREDICT too); returns as ``_vmapped_attack``."""
    config = group.config
    judge = {}
    if config.vote_judge == "defence":
        judge = {"sigma": config.sigma, "judge_n": config.n0, "alpha": config.alpha}
    x_adv, top_left = vote_patch_attack(
        group.classify,
        group.images,
        np.asarray(group.labels, np.int32),
        config.patch_size,
        key=keys,
        goal=config.vote_goal,
        **judge,
        **_budget(config),
        **localize_settings(config),
    )
    return np.asarray(x_adv), [[int(v) for v in p] for p in np.asarray(top_left)]


def _vmapped_attack(group: Group, keys: jax.Array, attack):
    """``(x_adv [B, H, W, C] numpy, patch top-lefts as lists of ints)``: the
    one-image attack mapped over images, labels and keys."""
    labels = np.asarray(group.labels, np.int32)
    mapped = jax.vmap(lambda x, y, k: attack(x=x, y=y, key=k))
    x_adv, top_left = mapped(group.images, labels, keys)
    patches = [[int(v) for v in p] for p in np.asarray(top_left)]
    return np.asarray(x_adv), patches


# Attacked mode -> its attack.
ATTACKS = {
    "practical": _standard_attack,
    "adaptive": _adaptive_attack,
    "vote_adaptive": _vote_attack,
}
