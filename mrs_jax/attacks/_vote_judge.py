"""Judging the vote-aware attack's candidates: by the localiser and f, or by the
defence as deployed (localise, then PREDICT in the located mask), and keeping
each image's worst for the defence. See docs/attacks.md ("Vote-aware")."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax import certification, localization
from mrs_jax.core import ABSTAIN, checks as _checks

OUTCOMES = ("fooled_missed", "fooled_abstained", "fooled_covered", "not_fooled")
# The deployed defence's answer on a candidate, worst for it first.
DEFENCE_OUTCOMES = ("wrong", "abstained", "right")
# Folded into an image's key for the PREDICT draws that judge its candidates
# (the search splits the key itself, so the two never share draws).
_JUDGE_STREAM = 1


@jax.jit
def best_wrong(classify, images, labels) -> jax.Array:
    """[B] int32: each image's best-scoring class other than its label."""
    logits = classify(images).astype(jnp.float32)
    is_label = jnp.arange(logits.shape[-1])[None, :] == labels[:, None]
    return jnp.argmax(jnp.where(is_label, -jnp.inf, logits), axis=-1).astype(jnp.int32)


class VoteAttackResult(NamedTuple):
    """Output of ``vote_patch_attack(..., return_details=True)``.

    Attributes:
      image: [H, W, C] (or [B, H, W, C]) float32 in [0, 1], x with the patch.
      top_left: [2] (or [B, 2]) int32 (row, column) of the patch.
      outcome: [] (or [B]) int32 index into ``OUTCOMES`` of the kept candidate,
        as the real localiser judged it.
      objective: [] (or [B]) float32 surrogate J of the kept candidate.
      target: [] (or [B]) int32 attacked class t (untargeted: f's best wrong
        class on the kept image).
      candidate_outcomes: [Q] (or [B, Q]) int32 outcomes of all judged
        candidates, greatest J first (Q = num_candidates).
      candidate_objectives: [Q] (or [B, Q]) float32 their J, decreasing.
      defence: [] (or [B]) int32 index into ``DEFENCE_OUTCOMES`` of the kept
        candidate; -1 where the defence did not judge (no ``sigma``).
      candidate_defence: [Q] (or [B, Q]) int32, the same for every candidate.
      candidate_support: [Q] (or [B, Q]) float32 share of each candidate's
        PREDICT draws on the true label (0 where the vote abstained; NaN
        without ``sigma``).
    """

    image: np.ndarray
    top_left: np.ndarray
    outcome: np.ndarray
    objective: np.ndarray
    target: np.ndarray
    candidate_outcomes: np.ndarray
    candidate_objectives: np.ndarray
    defence: np.ndarray
    candidate_defence: np.ndarray
    candidate_support: np.ndarray


class DefenceJudge(NamedTuple):
    """The deployed defence that judges the candidates: PREDICT with ``n``
    draws of noise ``sigma`` at level ``alpha`` in the located mask, ``batch_size``
    draws per model batch (MRS_SPEC.md s. 9)."""

    sigma: float
    n: int
    alpha: float
    batch_size: int


@jax.jit
def _labels_of(classify, images) -> jax.Array:
    return jnp.argmax(classify(images), axis=-1).astype(jnp.int32)


def judge_by_localizer(
    classify, candidates, top_lefts, labels, size, localize_kwargs, chunk
):
    """Each candidate [N, H, W, C] localised by the real localiser, and its
    ``OUTCOMES`` index under that localiser and f: ``(located, outcomes [N])``."""
    located = localization.localize(classify, candidates, size, **localize_kwargs)
    predicted = np.concatenate(
        [
            np.asarray(_labels_of(classify, jnp.asarray(candidates[i : i + chunk])))
            for i in range(0, len(candidates), chunk)
        ]
    )
    outcomes = np.empty(len(candidates), np.int32)
    for n, (result, (row, col)) in enumerate(zip(located, top_lefts, strict=True)):
        covered = bool(np.all(result.mask[row : row + size, col : col + size]))
        if predicted[n] == labels[n]:
            outcomes[n] = 3
        elif result.reason_name == "multiple_regions":
            outcomes[n] = 1
        else:
            outcomes[n] = 2 if covered else 0
    return located, outcomes


def judge_by_defence(classify, candidates, located, labels, judge, keys, num_classes):
    """The deployed defence on every candidate: ``multiple_regions`` abstains,
    else PREDICT in the located (or tie-break) mask. Returns
    (``DEFENCE_OUTCOMES`` index [N] int32, share of draws on the label [N])."""
    count = len(candidates)
    defence = np.full(count, DEFENCE_OUTCOMES.index("abstained"), np.int32)
    support = np.zeros(count, np.float32)
    answered = [i for i, r in enumerate(located) if r.reason_name != "multiple_regions"]
    if not answered:
        return defence, support
    # Padded with the first answered candidate: one batch shape, one compile.
    padded = np.array(answered + answered[:1] * (count - len(answered)))
    masks = np.stack([np.asarray(located[i].mask) for i in padded])
    predictions = certification.predict(
        classify, candidates[padded], masks, judge.sigma, key=keys[padded],
        n=judge.n, alpha=judge.alpha, num_classes=num_classes,
        batch_size=judge.batch_size,
    )  # fmt: skip
    for i, prediction in zip(answered, predictions, strict=False):
        support[i] = prediction.counts[labels[i]] / judge.n
        if prediction.label == labels[i]:
            defence[i] = DEFENCE_OUTCOMES.index("right")
        elif prediction.label != ABSTAIN:
            defence[i] = DEFENCE_OUTCOMES.index("wrong")
    return defence, support


def keep_worst_for_defence(
    candidates, corners, objective, outcomes, defence, support, targets
):
    """Each image's candidate worst for the defence: first in
    ``DEFENCE_OUTCOMES`` order, then the least support for the label, then
    first in ``OUTCOMES`` order, ties by J (the candidates come sorted by J,
    and lexsort sorts by its last key first). Without the defence's judgement
    (defence -1, support NaN) only the last two keys differ."""
    support_key = np.where(np.isnan(support), 0.0, support)
    best = np.lexsort((-objective, outcomes, support_key, defence), axis=-1)[:, 0]
    rows = np.arange(len(candidates))
    return VoteAttackResult(
        candidates[rows, best].astype(np.float32),
        corners[rows, best].astype(np.int32),
        outcomes[rows, best],
        objective[rows, best].astype(np.float32),
        targets,
        outcomes,
        objective.astype(np.float32),
        defence[rows, best],
        defence,
        support.astype(np.float32),
    )


def candidate_keys(keys: jax.Array, keep: int) -> jax.Array:
    """[B * Q] PREDICT keys: ``fold_in(fold_in(keys[b], _JUDGE_STREAM), q)``."""
    judge_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, _JUDGE_STREAM)
    per_candidate = jax.vmap(
        lambda k: jax.vmap(jax.random.fold_in, in_axes=(None, 0))(k, jnp.arange(keep))
    )
    return per_candidate(judge_keys).reshape(-1)


def defence_judge(sigma, judge_n, alpha, batch_size) -> DefenceJudge | None:
    """The checked PREDICT settings of the judgement; None without ``sigma``."""
    if sigma is None:
        return None
    return DefenceJudge(
        sigma=_checks.positive_float(sigma, "sigma"),
        n=_checks.positive_int(judge_n, "judge_n"),
        alpha=_checks.probability_level(alpha),
        batch_size=_checks.positive_int(batch_size, "batch_size"),
    )


def judge_and_keep(
    classify, found, labels, aims, keys, settings, localize_kwargs, judge, num_classes
) -> VoteAttackResult:
    """Judges every image's candidates (``found``: images [B, Q, H, W, C],
    top-lefts [B, Q, 2], J [B, Q]) and keeps each image's worst for the defence."""
    candidates, corners, objective = found
    count, keep = objective.shape
    flat = candidates.reshape((-1,) + candidates.shape[2:])
    flat_labels = np.repeat(labels, keep)
    located, outcomes = judge_by_localizer(
        classify, flat, corners.reshape(-1, 2), flat_labels, settings.budget.size,
        localize_kwargs, localize_kwargs["batch_size"],
    )  # fmt: skip
    if judge is None:
        defence = np.full(count * keep, -1, np.int32)
        support = np.full(count * keep, np.nan, np.float32)
    else:
        defence, support = judge_by_defence(
            classify, flat, located, flat_labels, judge,
            candidate_keys(keys, keep), num_classes,
        )  # fmt: skip
    shape = (count, keep)
    result = keep_worst_for_defence(
        candidates, corners, objective, outcomes.reshape(shape),
        defence.reshape(shape), support.reshape(shape), aims,
    )  # fmt: skip
    if settings.untargeted:  # report the class the kept patch ended on
        targets = np.asarray(best_wrong(classify, jnp.asarray(result.image), labels))
        result = result._replace(target=targets)
    return result
