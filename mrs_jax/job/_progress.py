"""What a running job shows: its progress bar with the running accuracies, and
one line on a finished run."""

from __future__ import annotations

from typing import Any

import numpy as np

from mrs_jax import rows as metrics
from mrs_jax.core import ABSTAIN, progress_bar


def summary(rows_done: list[dict[str, Any]]) -> str:
    """One line on a finished run: images, accuracies, abstentions, time."""
    if not rows_done:
        return "no rows"
    shown = running_accuracies(rows_done)
    abstained = sum(r.get("prediction") == ABSTAIN for r in rows_done)
    seconds = [sum((r.get("seconds") or {}).values()) for r in rows_done]
    parts = [f"{len(rows_done)} images"]
    parts += [f"{name} {value}" for name, value in shown.items()]
    parts.append(f"abstained {abstained / len(rows_done):.1%}")
    parts.append(f"{float(np.median(seconds)):.3g} s/image (median)")
    return ", ".join(parts)


def running_accuracies(finished: list[dict[str, Any]]) -> dict[str, str]:
    """Clean / empirical / certified (R = 0) accuracy of the rows so far, and
    the share certified at the target radius where the rows have one."""
    if not finished:
        return {}
    shown = {
        "clean": f"{metrics.clean_accuracy(finished):.1%}",
        "empirical": f"{metrics.empirical_accuracy(finished):.1%}",
        "certified": f"{metrics.certified_accuracy(finished, 0.0):.1%}",
    }
    if "certified_at_target" in finished[0]:
        shown["at_target"] = f"{metrics.target_accuracy(finished):.1%}"
    return shown


def certify_bar(todo, total, progress):
    """A bar on a terminal, a line a minute in a log file; says where a resumed
    run starts."""
    if not progress:
        return None
    done = total - len(todo)
    bar = progress_bar(total, desc="certify", unit="img", initial=done)
    if done:
        bar.write(f"certify: resuming at image {done + 1} of {total}")
    return bar
