"""One test image's row for job mode ``double_masking`` (PatchCleanser, issue 12).

PatchCleanser (``mrs_jax.double_masking``) runs on the clean image with the
R-covering set of ``pc_k x pc_k`` masks for the job's ``patch_size``, hidden
pixels filled with ``pc_fill``. Its certificate is a worst case over every
patch position and content inside the image, deterministic (no sampling, no
alpha, no key), and not an l2 radius.

Row fields (beside ``index``, ``dataset_index``):

- ``label``: the true class.
- ``prediction``: the defended (double-masking) label; never abstains.
- ``certified``: every two-mask prediction equals ``prediction``, so no
  ``s x s`` patch anywhere can change it.
- ``certificate``: ``"every_patch_position"``, what ``certified`` means.
- ``radius``: None, the certificate has no radius. ``mrs_jax.metrics`` counts
  a certified, correct row at every R (certified accuracy = share with
  ``certified`` and ``prediction == label``, the same at every radius).
- ``case``: 1, 2 or 3, the inference case that decided the label.
- ``covered``: None (no attack was run: the certificate covers every patch).
- ``base_clean_prediction``: the undefended base classifier's label.
- ``seconds``: ``{"patchcleanser": ...}``.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mrs_jax.double_masking import patchcleanser, patchcleanser_masks

if TYPE_CHECKING:
    from mrs_jax.job import JobConfig

CERTIFICATE = "every_patch_position"


@functools.lru_cache(maxsize=4)
def _masks(height: int, width: int, patch_size: int, k: int) -> np.ndarray:
    # The same mask set for every image of a run: build it once.
    return patchcleanser_masks((height, width), patch_size, k)


def patchcleanser_row(
    config: JobConfig, classify, x: np.ndarray, base_prediction: int
) -> dict[str, Any]:
    """PatchCleanser's fields of one image's row (module docstring).

    Args:
      config: the job's settings (``patch_size``, ``pc_k``, ``pc_fill``,
        ``pc_batch_size``).
      classify: the base classifier, ``[B, H, W, C] -> [B, K]`` logits.
      x: ``[H, W, C]`` float32 clean image in [0, 1].
      base_prediction: the base classifier's label of ``x``.

    Returns:
      The row without ``label``, ``index`` and ``dataset_index``.
    """
    start = time.perf_counter()
    masks = _masks(x.shape[0], x.shape[1], config.patch_size, config.pc_k)
    result = patchcleanser(
        classify, x, masks, fill=config.pc_fill, batch_size=config.pc_batch_size
    )
    return {
        "prediction": int(result.label),
        "certified": bool(result.certified),
        "certificate": CERTIFICATE,
        "radius": None,
        "case": int(result.case),
        "covered": None,
        "base_clean_prediction": int(base_prediction),
        "seconds": {"patchcleanser": time.perf_counter() - start},
    }
