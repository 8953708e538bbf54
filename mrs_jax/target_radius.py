"""Certify at a target radius in the job (issue 11, section 2).

With ``JobConfig.target_radius`` set, the job's certify step asks
:func:`mrs_jax.sequential.certify_at` "is the prediction certified at this
radius?" instead of running fixed-n CERTIFY, with ``max_n = config.n``. The
target is a number (l2, [0, 1] pixel units) or ``"unrestricted"``:
``patch_l2_bound(s, C) = s * sqrt(C)``, the largest l2 norm any ``s x s``
patch can have, so a certificate there holds against every possible patch
inside the mask.

Row fields (:func:`certify_fields`), beside the fixed-n ones:

- ``target_radius``: the resolved radius.
- ``certified_at_target``: ``certify_at``'s decision.
- ``num_samples``: every draw made, ``n0`` included.
- ``prediction`` / ``radius`` / ``p_lower`` / ``certified``: what the draws
  made certify, as CERTIFY would report them: ``p_lower`` is a valid
  ``1 - alpha`` lower bound at whatever round the draws stopped
  (``certify_at``'s docstring), so where it exceeds 1/2 the selected class is
  returned with radius ``sigma * Phi^-1(p_lower)`` (``certified`` True; at
  least the target where ``certified_at_target``); otherwise the row abstains.
  A row that stopped early because the target was out of reach may thus
  abstain where fixed-n CERTIFY with ``n`` draws would have returned a small
  radius: its ``radius`` is a lower bound, not CERTIFY's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mrs_jax import bounds, sequential, smoothing
from mrs_jax.masks import patch_l2_bound

if TYPE_CHECKING:
    from mrs_jax.job import JobConfig

UNRESTRICTED = "unrestricted"


def resolve(target: float | str | None, patch_size: int, channels: int):
    """The target as an l2 radius: None, the number, or ``s * sqrt(C)``.

    Args:
      target: ``JobConfig.target_radius``.
      patch_size: s.
      channels: C.
    """
    if target is None:
        return None
    if target == UNRESTRICTED:
        return patch_l2_bound(patch_size, channels)
    return float(target)


def check_reachable(config: JobConfig, channels: int) -> float | None:
    """Refuses a target that ``n`` draws cannot certify; returns the radius.

    Raises:
      ValueError: naming ``target_radius``, with what it resolved to.
    """
    radius = resolve(config.target_radius, config.patch_size, channels)
    if radius is None:
        return None
    try:
        sequential.schedule(radius, config.sigma, config.alpha, config.n)
    except ValueError as error:
        raise ValueError(
            f"target_radius={config.target_radius!r} (l2 radius {radius:.4g}) "
            f"cannot be certified with n={config.n} at sigma={config.sigma:g}, "
            f"alpha={config.alpha:g}: {error}"
        ) from None
    return radius


def skipped_fields(config: JobConfig, channels: int) -> dict[str, Any]:
    """The target fields of a row whose certify step did not run (abstained).

    Empty without a target; else not certified and ``num_samples`` None.
    """
    radius = resolve(config.target_radius, config.patch_size, channels)
    if radius is None:
        return {}
    return {"target_radius": radius, "certified_at_target": False, "num_samples": None}


def certify_fields(
    config: JobConfig,
    classify,
    num_classes: int,
    x: np.ndarray,
    mask: np.ndarray,
    key,
) -> dict[str, Any]:
    """The certify step's row fields at the config's target (module docstring).

    Args:
      config: the job's settings; ``target_radius`` is not None.
      classify: the base classifier, ``[B, H, W, C] -> [B, K]`` logits.
      num_classes: K.
      x: ``[H, W, C]`` float32 image in [0, 1].
      mask: ``[H, W]`` bool smoothing mask.
      key: the certify key (split into selection and estimation keys).
    """
    radius = resolve(config.target_radius, config.patch_size, x.shape[-1])
    cert = sequential.certify_at(
        classify,
        x,
        mask,
        config.sigma,
        radius,
        key=key,
        n0=config.n0,
        max_n=config.n,
        alpha=config.alpha,
        num_classes=num_classes,
        batch_size=config.batch_size,
    )
    return fields(config, cert, x.shape[-1])


def fields(config: JobConfig, cert, channels: int) -> dict[str, Any]:
    """The row fields of one ``certify_at`` outcome (module docstring).

    Args:
      config: the job's settings; ``target_radius`` is not None.
      cert: the ``sequential.TargetCertificate``.
      channels: C, to resolve ``"unrestricted"``.
    """
    radius = resolve(config.target_radius, config.patch_size, channels)
    returned = cert.p_lower > 0.5
    return {
        "prediction": cert.selected_label if returned else smoothing.ABSTAIN,
        "radius": bounds.certified_radius(config.sigma, cert.p_lower),
        "p_lower": float(cert.p_lower),
        "certified": bool(returned),
        "abstain_reason": None if returned else "certify_abstain",
        "target_radius": radius,
        "certified_at_target": bool(cert.certified),
        "num_samples": int(cert.num_samples),
    }
