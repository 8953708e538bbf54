"""One run's summary: what the tables, curves and records are made of."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mrs_jax import rows as metrics


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """Accuracies of one run; all accuracies in [0, 1].

    Attributes:
      name: run name.
      mode: "practical", "center", "gradcam" or "clean".
      size: patch side s.
      channels: image channels C.
      sigma: noise level, or None if run.json has none.
      num_images: rows read.
      clean_accuracy: pipeline accuracy on clean images (`metrics.clean_accuracy`).
      empirical_accuracy: prediction == label (`metrics.empirical_accuracy`).
      undefended_accuracy: base classifier on x_adv without defence; None when the
        rows do not carry `undefended_adv_prediction`.
      abstain_rate: share of rows with prediction -1.
      counted_radii: per row, the radius up to which it counts as certified
        (-inf: never), from `metrics.certified_radii`.
      expected_images: run.json's `num_images` (None if it has none); fewer
        rows than this make the run partial.
      base_clean_accuracy: the base classifier alone on clean images; None when
        the rows do not carry `base_clean_prediction`.
      localization: share of rows per localisation outcome ("located",
        "no_change", "multiple_regions"), or None for modes without one.
      covered_rate: share of rows whose mask contains the patch (practical,
        adaptive).
      attack_won: attacked modes: share of rows where the patch fooled the
        undefended classifier and the mask missed it (``metrics.attack_won_rate``).
      certified_any_mask: attacked modes: share certified for the true label
        at R = s*sqrt(C) wherever the mask lies (``metrics.certified_correct_rate``).
      target_radius: the l2 target of a ``certify_at`` run, else None.
      unrestricted_target: the target was "unrestricted" (s*sqrt(C)): every
        possible patch inside the mask.
      target_accuracy: share of rows certified at the target for the true
        label (and, with a patch, covering it; ``metrics.target_accuracy``).
      mean_samples: mean draws per image where CERTIFY ran (target runs).
      seconds_per_image: median seconds per image per phase and "total"
        (``metrics.seconds_per_image``), or None when rows carry no timings.
      restricted_to: None, or how many images the rows were restricted to
        (the images every run of a comparison holds: :func:`common_images`).
    """

    name: str
    mode: str
    size: int
    channels: int
    sigma: float | None
    num_images: int
    clean_accuracy: float
    empirical_accuracy: float
    undefended_accuracy: float | None
    abstain_rate: float
    counted_radii: tuple[float, ...]
    expected_images: int | None = None
    base_clean_accuracy: float | None = None
    localization: dict[str, float] | None = None
    covered_rate: float | None = None
    attack_won: float | None = None
    certified_any_mask: float | None = None
    target_radius: float | None = None
    unrestricted_target: bool = False
    target_accuracy: float | None = None
    mean_samples: float | None = None
    seconds_per_image: dict[str, float] | None = None
    restricted_to: int | None = None

    @property
    def localised(self) -> bool:
        """Whether its certified accuracy is the localised one (MRS pipeline)."""
        return self.mode in ("practical", "adaptive", "vote_adaptive", "clean")

    @property
    def certificate(self) -> str:
        """What its certificate covers: "localised" (MRS's located mask),
        "fixed mask" (center/gradcam) or "every patch position" (PatchCleanser)."""
        if self.mode in ("double_masking", "drs"):
            return "every patch position"
        if self.mode == "smoothed_double_masking":
            return "every patch position, l2 < R"
        return "localised" if self.localised else "fixed mask"

    @property
    def partial(self) -> bool:
        """Fewer rows than the run was asked for (killed, or shards missing);
        never for a run restricted to the images it shares with others."""
        expected = self.expected_images
        if self.restricted_to is not None:
            return False
        return expected is not None and self.num_images < expected

    @property
    def markers(self) -> dict[str, float]:
        """Reference radii s*sqrt(C) and s^2 (`metrics.radius_markers`)."""
        return metrics.radius_markers(self.size, self.channels)

    def certified_accuracy(self, radii: Sequence[float]) -> np.ndarray:
        """[M] localised certified R-accuracy at each radius in `radii`."""
        grid = np.asarray(radii, dtype=np.float64).reshape(-1)
        counted = np.asarray(self.counted_radii, dtype=np.float64)
        return (counted[None, :] >= grid[:, None]).mean(axis=1)
