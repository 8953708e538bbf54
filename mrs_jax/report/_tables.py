"""The markdown summary table of certification runs (``mrs_jax.analysis``).

Takes ``mrs_jax.analysis.RunSummary`` objects, already checked by
``mrs_jax.analysis``, which re-exports :func:`certified_name` and wraps
:func:`markdown_table`. Each run's certified accuracy means what its
certificate covers (``RunSummary.certificate``): the located mask (MRS:
practical, adaptive, clean), a fixed mask (center, gradcam) or every patch
position (PatchCleanser's double masking, which has no radius: the same value
at every R).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

UNRESTRICTED = "true unrestricted (s*sqrt(C))"
_PAPER = "paper s^2"
_LOCALISED_MODES = "practical/adaptive/clean"


def certified_name(summaries: Sequence[Any]) -> str:
    """What the certified columns measure.

    "localised certified" when every run is an MRS pipeline run (practical,
    adaptive, clean), "certified" for the fixed-mask settings, "certified
    (every patch position)" for PatchCleanser alone, and, when mixed,
    "certified" with what it means for which modes.
    """
    kinds = {s.certificate for s in summaries}
    if kinds == {"localised"}:
        return "localised certified"
    if kinds == {"fixed mask"}:
        return "certified"
    if kinds == {"every patch position"}:
        return "certified (every patch position)"
    parts = []
    if "localised" in kinds:
        parts.append(f"localised for {_LOCALISED_MODES}")
    if "every patch position" in kinds:
        parts.append("every patch position for double_masking and drs")
    if "every patch position, l2 < R" in kinds:
        parts.append("every patch position, l2 < R for smoothed_double_masking")
    return f"certified ({'; '.join(parts)})" if parts else "certified"


def markdown_table(summaries: Sequence[Any], radii: Sequence[float]) -> str:
    """Markdown table: one line per run, accuracies in percent.

    Columns: run, mode, sigma, s, images ("3/6 (partial)" when rows are missing),
    the base classifier's accuracy clean and under attack, the defence's clean
    and empirical accuracy, abstain, the localisation outcomes (covered,
    no_change, multiple regions, % of images), then (localised) certified
    R-accuracy at each R in `radii` and at each run's own s*sqrt(C) and s^2 (the
    radius in brackets). When some run certified at a target radius
    (``certify_at``): the target ("unrestricted" for s*sqrt(C)), the share
    certified at it and the mean draws per image. "-" where a run has no such
    value. Last, the median seconds per image ("s/image", every phase; "-"
    without timings). A footer line says what each kind of certificate in the
    table covers.

    Args:
      summaries: checked ``RunSummary`` objects.
      radii: checked radii for the certified columns (>= 0).

    Returns:
      The table, ending in a newline.
    """
    name = certified_name(summaries)
    cert = "loc. cert" if name == "localised certified" else "cert"
    targets = any(s.target_radius is not None for s in summaries)
    attacked = any(s.certified_any_mask is not None for s in summaries)
    header = _header(cert, radii, targets, attacked)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        lines.append("| " + " | ".join(_cells(s, radii, targets, attacked)) + " |")
    lines.append("")
    lines += _footer(summaries, cert, name, attacked)
    return "\n".join(lines) + "\n"


def _header(cert: str, radii, targets: bool, attacked: bool) -> list[str]:
    """The column names of :func:`markdown_table`."""
    header = ["run", "mode", "sigma", "s", "images", "base clean", "base attacked"]
    header += ["clean", "empirical", "abstain"]
    header += ["covered", "no_change", "multiple regions"]
    if attacked:
        header += ["attack won", "cert any mask R=s*sqrt(C)"]
    header += [f"{cert} R={r:g}" for r in radii]
    header += [f"{cert} R=s*sqrt(C)", f"{cert} R=s^2"]
    if targets:
        header += ["target R", f"{cert} at target", "draws/image"]
    return [*header, "s/image"]


def _footer(summaries, cert: str, name: str, attacked: bool) -> list[str]:
    """What each kind of certificate and column in the table means, one line each."""
    lines = [
        f"{cert}: {name} R-accuracy (%); localised = conditional on the located "
        "mask covering the patch, not a worst case over patch positions. "
        "base = the undefended classifier."
    ]
    if attacked:
        lines.append(
            "attack won: the patch fooled the undefended classifier and the mask "
            "missed it. cert any mask: certified for the true label at s*sqrt(C) "
            "wherever the mask lies (a guarantee for the attacked image, not "
            "against the patch where the mask misses it)."
        )
    if any(s.certificate == "every patch position" for s in summaries):
        lines.append(
            "double_masking (PatchCleanser) and drs (derandomized smoothing): "
            "certified for every patch position and content, no radius: the "
            "same accuracy at every R."
        )
    if any(s.certificate == "every patch position, l2 < R" for s in summaries):
        lines.append(
            "smoothed_double_masking: certified for every patch position and "
            "every patch content of l2 norm below R (masked-noise double masking)."
        )
    if any(s.unrestricted_target for s in summaries):
        lines.append(
            "target R unrestricted = s*sqrt(C): certified against every possible "
            "patch inside the mask."
        )
    restricted = {s.restricted_to for s in summaries} - {None}
    if restricted:
        lines.append(
            "images: each run's rows on the images every run holds "
            f"({', '.join(str(n) for n in sorted(restricted))})."
        )
    lines.append("s/image: median wall-clock seconds per image, every phase.")
    return lines


def seconds_table(summaries: Sequence[Any]) -> str:
    """Markdown table of the median seconds per image in each phase, one line
    per run (phases as the job timed them; "-" where a run has no such phase)."""
    phases: list[str] = []
    for s in summaries:
        for phase in s.seconds_per_image or {}:
            if phase != "total" and phase not in phases:
                phases.append(phase)
    header = ["run", "mode", *phases, "total"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        timed = s.seconds_per_image or {}
        cells = [s.name, s.mode]
        cells += [_seconds(timed.get(p)) for p in [*phases, "total"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Median wall-clock seconds per image, per phase as the job timed it.")
    return "\n".join(lines) + "\n"


def _cells(s: Any, radii: Sequence[float], targets: bool, attacked: bool) -> list[str]:
    sigma = "-" if s.sigma is None else f"{s.sigma:g}"
    located = s.localization or {}
    cells = [s.name, s.mode, sigma, str(s.size), _images(s)]
    cells += [_percent(s.base_clean_accuracy), _percent(s.undefended_accuracy)]
    cells += [_percent(s.clean_accuracy), _percent(s.empirical_accuracy)]
    cells += [_percent(s.abstain_rate), _percent(s.covered_rate)]
    cells += [_percent(located.get(k)) for k in ("no_change", "multiple_regions")]
    if attacked:
        cells += [_percent(s.attack_won), _percent(s.certified_any_mask)]
    cells += [_percent(a) for a in s.certified_accuracy(radii)]
    for radius in (s.markers[UNRESTRICTED], s.markers[_PAPER]):
        accuracy = s.certified_accuracy([radius])[0]
        cells.append(f"{_percent(accuracy)} ({radius:.3g})")
    if targets:
        if s.target_radius is None:
            cells += ["-", "-", "-"]
        else:
            target = f"{s.target_radius:.3g}"
            if s.unrestricted_target:
                target += " (unrestricted)"
            draws = "-" if s.mean_samples is None else f"{s.mean_samples:.0f}"
            cells += [target, _percent(s.target_accuracy), draws]
    cells.append(_seconds((s.seconds_per_image or {}).get("total")))
    return cells


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _images(s: Any) -> str:
    if s.restricted_to is not None:
        return f"{s.num_images} of {s.restricted_to} common"
    if s.partial:
        return f"{s.num_images}/{s.expected_images} (partial)"
    return str(s.num_images)
