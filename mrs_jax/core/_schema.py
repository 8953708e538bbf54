"""The result-row schema: the constants every stage shares, and one line per field.

A certification job writes one row per test image (``mrs_jax.job``); the report
reads them (``mrs_jax.rows``, ``mrs_jax.report``). :data:`ROW_FIELDS` is the one
description of what a row may hold; :func:`describe` prints it as a table.
"""

from __future__ import annotations

from typing import NamedTuple

ABSTAIN = -1
"""The label of an abstention (every class index is >= 0)."""

MAX_DRAWS = 2**31 - 1
"""The most noise draws one estimate may take (draw indices are int32)."""

MODES = (
    "practical",
    "adaptive",
    "vote_adaptive",
    "center",
    "gradcam",
    "clean",
    "double_masking",
    "smoothed_double_masking",
    "drs",
)
"""Every job mode, as rows and ``run.json`` name them."""

ATTACKED_MODES = ("practical", "adaptive", "vote_adaptive")
"""Modes whose rows attack a patch: each row says whether its mask covers it."""

LOCALIZATION_OUTCOMES = ("located", "no_change", "multiple_regions")
"""Values of ``localization``: one region found; no block changed the base
prediction (CERTIFY still runs at the tie-break's block); two or more regions
(abstain)."""

EVERY_PATCH_POSITION = "every_patch_position"
"""``certificate`` of rows whose certificate holds for every patch position."""

_ALL = MODES
_ATTACKED = ATTACKED_MODES
_LOCALISED = (*ATTACKED_MODES, "clean")
_WINDOW = ("center", "gradcam")
_SMOOTHED = (*_ATTACKED, "clean", *_WINDOW, "smoothed_double_masking")
_MASKING = ("double_masking", "smoothed_double_masking")
_EVERY_POSITION = (*_MASKING, "drs")


class RowField(NamedTuple):
    """One field of a result row."""

    name: str
    type: str
    modes: tuple[str, ...]
    meaning: str


ROW_FIELDS: tuple[RowField, ...] = (
    RowField("index", "int", _ALL, "position of the image in the run's selection"),
    RowField("dataset_index", "int", _ALL, "which image of the split it is"),
    RowField(
        "image", "str", _ALL,
        "the image's `<class folder>/<file>`, where the split is a folder",
    ),
    RowField("run_id", "str", _ALL, "the run.json this row was written under"),
    RowField("label", "int", _ALL, "true class"),
    RowField(
        "prediction", "int", _ALL,
        "the defence's label (on the attacked image where there is one); -1 abstains",
    ),
    RowField(
        "certified", "bool", _ALL,
        "the certificate ran and returned `prediction`",
    ),
    RowField(
        "radius", "float | None", _ALL,
        "certified l2 radius of `prediction` (0 on abstain); None for "
        "`every_patch_position` certificates",
    ),
    RowField(
        "p_lower", "float | None", _SMOOTHED,
        "Clopper-Pearson lower bound of the top class's probability; None where "
        "CERTIFY did not run",
    ),
    RowField(
        "abstain_reason", "str | None", (*_LOCALISED, *_WINDOW),
        "why the defence abstained, or None",
    ),
    RowField(
        "covered", "bool | None", _ALL,
        "the smoothing mask contains the whole patch; None where there is no patch",
    ),
    RowField(
        "mask_box", "list | None", (*_LOCALISED, *_WINDOW),
        "[top, left, bottom, right] of the smoothing mask",
    ),
    RowField(
        "localization", "str", _LOCALISED,
        "localisation outcome: located, no_change or multiple_regions",
    ),
    RowField(
        "located_top_left", "list | None", _LOCALISED,
        "top-left of the located block",
    ),
    RowField("patch_top_left", "list", _ATTACKED, "top-left of the attack's patch"),
    RowField(
        "patch", "list", _ATTACKED,
        "the patch's pixels [s][s][C]; only with `save_patches`",
    ),
    RowField(
        "attacked_class", "int", _LOCALISED,
        "the most frequent label of the prediction map (c_t)",
    ),
    RowField(
        "clean_prediction", "int", _ATTACKED,
        "the defence's label on the clean image",
    ),
    RowField(
        "clean_certified", "bool", _ATTACKED,
        "the clean image's certificate ran and returned `clean_prediction`",
    ),
    RowField("clean_radius", "float", _ATTACKED, "certified radius on the clean image"),
    RowField(
        "clean_certified_at_target", "bool", _ATTACKED,
        "the clean image certified at the target radius; only with one",
    ),
    RowField(
        "clean_num_samples", "int | None", _ATTACKED,
        "estimation draws used on the clean image (`certify_at`)",
    ),
    RowField(
        "clean_abstain_reason", "str | None", _ATTACKED,
        "why the defence abstained on the clean image",
    ),
    RowField(
        "clean_localization", "str", _ATTACKED,
        "localisation outcome on the clean image",
    ),
    RowField(
        "base_clean_prediction", "int", _ALL,
        "the undefended base classifier's label on the clean image",
    ),
    RowField(
        "undefended_adv_prediction", "int", _ATTACKED,
        "the undefended base classifier's label on the attacked image",
    ),
    RowField(
        "certified_at_target", "bool", _SMOOTHED,
        "certified at the run's target radius (`certify_at`); only with one",
    ),
    RowField(
        "target_radius", "float", _SMOOTHED,
        "the l2 radius `certified_at_target` is for; only with one",
    ),
    RowField(
        "num_samples", "int | None", _SMOOTHED,
        "estimation draws used (`certify_at` and masked-noise double masking)",
    ),
    RowField(
        "certificate", "str", _EVERY_POSITION,
        "what `certified` holds for: every_patch_position",
    ),
    RowField("case", "int", _MASKING, "PatchCleanser's inference case (1, 2 or 3)"),
    RowField("votes", "list[int]", ("drs",), "votes per class over every band"),
    RowField("margin", "int", ("drs",), "the label's votes minus the runner-up's"),
    RowField(
        "seconds", "dict", _ALL,
        "seconds per phase (attack, localize, certify, ...) for this image",
    ),
)
"""Every field a row may carry, with the modes that write it."""


def field_names() -> tuple[str, ...]:
    """The names of :data:`ROW_FIELDS`, in order."""
    return tuple(field.name for field in ROW_FIELDS)


def describe() -> str:
    """:data:`ROW_FIELDS` as a markdown table (field, type, modes, meaning)."""
    lines = ["| field | type | modes | meaning |", "|---|---|---|---|"]
    for field in ROW_FIELDS:
        modes = "all" if field.modes == _ALL else ", ".join(field.modes)
        lines.append(f"| `{field.name}` | {field.type} | {modes} | {field.meaning} |")
    return "\n".join(lines)
