"""A classifier's weights fingerprint: what a run directory records to tell models
apart, and to refuse a resume by another one.

:func:`checkpoint_fingerprint` names a loaded checkpoint the same way on every
machine; :func:`mrs_jax.models.load_classifier` attaches it to the classifier it
returns, and :func:`classifier_fingerprint` reads it back (else hashes the
classifier's own weights), so a library run and ``mrs-certify`` record the same
one for the same checkpoint.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np
from flax import nnx

from mrs_jax.models._classifier import as_classifier

# The attribute of a classifier that holds its checkpoint's fingerprint. A
# classifier rebuilt from it (``jax.tree.map``, new weights) has none, and is
# fingerprinted by its own weights.
_ATTRIBUTE = "weights_sha256"


def weights_fingerprint(classify: Any) -> str | None:
    """SHA-256 over a classifier's array leaves (names, dtypes, shapes, bytes).

    Args:
      classify: a pytree classifier, e.g. a ``jax.tree_util.Partial`` from
        :func:`mrs_jax.models.as_classifier` whose leaves are the model's weights.

    Returns:
      The hex digest, or None when ``classify`` has no leaves (a plain function:
      its weights, if any, are invisible constants).
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(classify)
    # A plain function is a leaf itself; only arrays (and numbers) are weights.
    flat = [
        (path, leaf)
        for path, leaf in flat
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float))
    ]
    if not flat:
        return None
    digest = hashlib.sha256()
    for path, leaf in flat:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(
            leaf.dtype, jax.dtypes.prng_key
        ):
            leaf = jax.random.key_data(leaf)
        array = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
        header = f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|"
        digest.update(header.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def checkpoint_fingerprint(model: nnx.Module, *, folded: bool) -> str:
    """The fingerprint of a loaded checkpoint's classifier, the same on every
    machine.

    A SHA-256 of the model's weights as the checkpoint stores them (BatchNorm
    not folded), and, where ``folded``, a SHA-256 of that digest and the word
    ``batchnorm_folded``: the folded and the unfolded classifier are two
    classifiers (a resume with the other is refused), but neither digest
    depends on how a CPU rounds the fold (two CPUs gave two digests of one
    checkpoint's folded weights).
    """
    digest = weights_fingerprint(as_classifier(model))
    if not folded:
        return digest
    return hashlib.sha256(f"{digest}:batchnorm_folded".encode()).hexdigest()


def with_fingerprint(classify: Any, fingerprint: str) -> Any:
    """Attaches ``fingerprint`` to ``classify`` (a ``Partial``) and returns it."""
    setattr(classify, _ATTRIBUTE, fingerprint)
    return classify


def classifier_fingerprint(classify: Any) -> str | None:
    """The fingerprint a run directory records for ``classify``: the one its
    checkpoint gave it (:func:`mrs_jax.models.load_classifier`), else
    :func:`weights_fingerprint` (None for a plain function)."""
    attached = getattr(classify, _ATTRIBUTE, None)
    return attached if isinstance(attached, str) else weights_fingerprint(classify)
