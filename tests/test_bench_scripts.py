"""The small benchmark scripts behind RESULTS.md section 8, on rows and
classifiers written here."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import attack_comparison  # noqa: E402
import bench_mask_width  # noqa: E402
import practical_breakdown  # noqa: E402

sys.path.pop(0)


def _row(label, base, undefended, prediction, certified, covered, loc, clean_loc):
    return dict(
        label=label, base_clean_prediction=base,
        undefended_adv_prediction=undefended, prediction=prediction,
        certified=certified, covered=covered, localization=loc,
        clean_localization=clean_loc, clean_prediction=label,
    )  # fmt: skip


def test_the_breakdown_counts_each_group():
    rows = [
        _row(1, 1, 0, 1, True, True, "located", "no_change"),  # fooled, saved
        _row(1, 1, 0, 0, True, True, "located", "located"),  # fooled, lost
        _row(2, 2, 2, 3, True, False, "no_change", "no_change"),  # not fooled
        _row(3, 0, 0, -1, False, False, "multiple_regions", "located"),  # base wrong
    ]
    rows[3]["clean_prediction"] = 0
    lines = practical_breakdown.breakdown(rows).split("\n")
    assert lines[2] == "| all images | 4 | 2 | 1 | 1 | 2 | 1 | 1 |"
    assert lines[3] == "| base wrong on the clean image | 1 | 0 | 0 | 1 | 0 | 0 | 0 |"
    assert (
        lines[4] == "| base right, fooled by the attack | 2 | 2 | 0 | 0 | 2 | 1 | 1 |"
    )
    assert lines[5] == "| base right, not fooled | 1 | 0 | 1 | 0 | 0 | 0 | 0 |"
    assert lines[9] == "| located | 1 | 0 | 0 | 1 |"
    assert lines[10] == "| no_change | 2 | 0 | 0 | 0 |"


def test_the_attack_comparison_pairs_images_and_says_why_the_adaptive_one_won():
    def row(index, undefended, prediction, certified, covered, loc="located"):
        return dict(
            _row(1, 1, undefended, prediction, certified, covered, loc, loc),
            index=index,
        )

    standard = [
        row(0, 0, 1, True, True),  # certified
        row(1, 0, 1, True, True),  # certified
        row(2, 1, 1, False, False),  # right
        row(3, 0, 0, True, True),  # wrong
        row(9, 0, 1, True, True),  # only in the standard run
    ]
    adaptive = [
        row(0, 0, 1, True, False, "no_change"),  # right: mask missed the patch
        row(1, 0, -1, False, True),  # wrong: covered, smoothing abstained
        row(2, 1, 0, True, False),  # wrong: the base was not fooled
        row(3, 0, 1, True, True),  # certified: better than the standard attack
    ]
    text = attack_comparison.compare(standard, adaptive)
    lines = text.split("\n")
    assert lines[0].startswith("4 images in both runs")
    assert lines[4] == "| certified | 0 | 1 | 1 | 2 |"
    assert lines[5] == "| right | 0 | 0 | 1 | 1 |"
    assert lines[6] == "| wrong | 1 | 0 | 0 | 1 |"
    assert lines[7] == "| total | 1 | 1 | 2 | 4 |"
    assert "adaptive worse on 3 images, better on 1:" in lines
    assert "- base classifier not fooled: 1" in lines
    assert "- mask covered the patch, smoothing failed: 1" in lines
    assert "- mask missed the patch (no_change): 1" in lines
    assert lines[-2].endswith("both attacks 3, standard only 0, adaptive only 0, "
                              "neither 1")  # fmt: skip
    with pytest.raises(ValueError, match="share no test image"):
        attack_comparison.compare(standard[:1], adaptive[1:])


def test_mask_width_accuracies_see_noise_only_inside_the_square():
    # A classifier that answers 1 when any pixel of its top-left 4x4 corner
    # leaves [0, 1], else 0: noise in a centred square never reaches the corner.
    def classify(images):
        corner = images[:, :4, :4, :]
        outside = jnp.any((corner < 0) | (corner > 1), axis=(1, 2, 3))
        return jax.nn.one_hot(outside.astype(jnp.int32), 2)

    images = np.full((40, 16, 16, 3), 0.5, np.float32)
    labels = np.zeros(40, np.int64)
    key = jax.random.key(0)
    centre, anywhere = bench_mask_width.accuracies(
        classify, images, labels, 4, 3.0, key, batch=16
    )
    assert centre == 1.0  # the centred 4x4 square is rows and columns 6..9
    assert 0.0 < anywhere < 1.0  # some random squares overlap the corner
    full, _ = bench_mask_width.accuracies(classify, images, labels, 16, 3.0, key)
    assert full == 0.0
