"""The processes of one multi-process run: they must run the same job."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np


class ProcessesDisagreeError(ValueError):
    """The processes of one multi-process run were started with different jobs."""


def check_processes_agree(record: dict[str, Any], out_dir: Path) -> None:
    """Refuses, in every process at once, a run whose processes differ in config,
    model or run directory, before any of them writes anything.

    Each process gathers every process's SHA-256 digests of the three (one
    collective, ``multihost_utils.process_allgather``); with one JAX process
    there is nobody to disagree with.

    Raises:
      ProcessesDisagreeError: naming what differs.
    """
    count = jax.process_count()
    if count == 1:
        return
    from jax.experimental import multihost_utils

    parts = {
        "config": record["config"],
        "model (checkpoint weights)": record["model"],
        "run directory (--out)": str(Path(out_dir).resolve()),
    }
    digests = np.stack(
        [
            np.frombuffer(
                hashlib.sha256(json.dumps(v, sort_keys=True).encode()).digest(),
                np.uint8,
            )
            for v in parts.values()
        ]
    )
    gathered = np.asarray(multihost_utils.process_allgather(digests))
    differ = [
        name
        for k, name in enumerate(parts)
        if not (gathered[:, k] == gathered[:1, k]).all()
    ]
    if differ:
        raise ProcessesDisagreeError(
            f"the {count} processes of this run were started differently: their "
            f"{', '.join(differ)} differ; start every process with the same "
            "--config, --checkpoint and --out (nothing was written)"
        )
