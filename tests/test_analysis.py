"""Tests for mrs_jax.analysis on run directories written here."""

import csv
import json
import math

import pytest

from certify.analyze import main as analyze_main
from mrs_jax.report import _analysis as analysis, markdown_table

PRACTICAL_ROWS = [
    # label, clean / undefended / defended predictions, radius, covered
    dict(
        index=0,
        label=1,
        clean_prediction=1,
        clean_radius=9.5,
        undefended_adv_prediction=0,
        prediction=1,
        radius=9.0,
        certified=True,
        covered=True,
        base_clean_prediction=1,
        localization="located",
    ),
    dict(
        index=1,
        label=2,
        clean_prediction=2,
        clean_radius=4.0,
        undefended_adv_prediction=2,
        prediction=2,
        radius=30.0,
        certified=True,
        covered=False,
        base_clean_prediction=2,
        localization="no_change",
    ),
    dict(
        index=2,
        label=0,
        clean_prediction=0,
        clean_radius=2.0,
        undefended_adv_prediction=3,
        prediction=-1,
        radius=0.0,
        certified=False,
        covered=True,
        abstain_reason="certify_abstain",
        base_clean_prediction=1,
        localization="located",
    ),
    dict(
        index=3,
        label=3,
        clean_prediction=1,
        clean_radius=1.0,
        undefended_adv_prediction=1,
        prediction=3,
        radius=26.0,
        certified=True,
        covered=True,
        base_clean_prediction=3,
        localization="located",
    ),
]
CENTER_ROWS = [
    dict(index=0, label=1, prediction=1, radius=5.0, certified=True, covered=None),
    dict(index=1, label=2, prediction=0, radius=7.0, certified=True, covered=None),
]


def write_run(path, config, rows, truncated_tail=None):
    path.mkdir()
    (path / "run.json").write_text(json.dumps(config))
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if truncated_tail is not None:
        text += json.dumps(truncated_tail)[:17]  # a job killed mid-write
    (path / "rows.jsonl").write_text(text)
    return path


@pytest.fixture
def runs(tmp_path):
    practical = write_run(
        tmp_path / "practical_s7",
        dict(mode="practical", size=5, channels=3, sigma=7.0, num_images=4),
        PRACTICAL_ROWS,
        truncated_tail=dict(index=4, label=9, prediction=9, radius=99.0),
    )
    center = write_run(
        tmp_path / "center_s20",
        dict(mode="center", size=5, channels=3, sigma=20, name="centre"),
        CENTER_ROWS,
    )
    return practical, center


def test_read_rows_tolerates_truncated_last_line_only(tmp_path, runs):
    with pytest.warns(UserWarning, match="truncated"):
        rows = analysis.read_rows(runs[0] / "rows.jsonl")
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"index": 0}\n{"ind\n{"index": 2}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        analysis.read_rows(bad)


def test_summaries_and_table(runs):
    with pytest.warns(UserWarning):
        practical = analysis.summarize_run(runs[0])
    centre = analysis.summarize_run(runs[1])
    # Hand counts over PRACTICAL_ROWS: clean correct rows 0,1,2 -> 3/4; defended
    # correct rows 0,1,3 -> 3/4; undefended correct row 1 -> 1/4; abstain 1/4.
    assert practical.name == "practical_s7" and practical.num_images == 4
    assert practical.clean_accuracy == pytest.approx(0.75)
    assert practical.empirical_accuracy == pytest.approx(0.75)
    assert practical.undefended_accuracy == pytest.approx(0.25)
    assert practical.abstain_rate == pytest.approx(0.25)
    # Certified: row 0 (r=9, covered), row 3 (r=26, covered); row 1 is uncovered.
    # s*sqrt(C) = 8.66 -> 2/4, s^2 = 25 -> 1/4.
    assert list(practical.certified_accuracy([0, 8.66, 9.0, 9.01, 26.0, 26.1])) == [
        0.5,
        0.5,
        0.5,
        0.25,
        0.25,
        0.0,
    ]
    assert centre.name == "centre" and centre.undefended_accuracy is None
    assert centre.clean_accuracy == pytest.approx(0.5)

    # Base classifier: clean rows 0,1,3 -> 3/4; localisation: 1 of 4 no_change;
    # covered: rows 0, 2, 3 -> 3/4.
    assert practical.base_clean_accuracy == pytest.approx(0.75)
    assert practical.covered_rate == pytest.approx(0.75)
    assert practical.localization == {
        "located": 0.75,
        "no_change": 0.25,
        "multiple_regions": 0.0,
    }
    assert not practical.partial and centre.expected_images is None

    table = analysis.markdown_table([practical, centre], [0, 10])
    lines = table.strip().split("\n")
    assert len(lines) == 8 and lines[4] == ""
    assert "certified (localised for practical/adaptive/clean)" in lines[5]
    assert lines[6].startswith("attack won: the patch fooled")
    assert lines[7].startswith("s/image: median")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "run",
        "mode",
        "sigma",
        "s",
        "images",
        "base clean",
        "base attacked",
        "clean",
        "empirical",
        "abstain",
        "covered",
        "no_change",
        "multiple regions",
        "attack won",
        "cert any mask R=s*sqrt(C)",
        "cert R=0",
        "cert R=10",
        "cert R=s*sqrt(C)",
        "cert R=s^2",
        "s/image",
    ]
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells == [
        "practical_s7",
        "practical",
        "7",
        "5",
        "4",
        "75.0",
        "25.0",
        "75.0",
        "75.0",
        "25.0",
        "75.0",
        "25.0",
        "0.0",
        "0.0",  # attack won: rows 0, 2, 3 fooled the base model, all covered
        "75.0",  # certified at 8.66 wherever the mask lies: rows 0, 1, 3
        "50.0",
        "25.0",
        "50.0 (8.66)",
        "25.0 (25)",
        "-",
    ]
    cells = [c.strip() for c in lines[3].strip("|").split("|")]
    assert cells == [
        "centre",
        "center",
        "20",
        "5",
        "2",
        "-",
        "-",
        "50.0",
        "50.0",
        "0.0",
        "-",
        "-",
        "-",
        "-",
        "-",
        "50.0",
        "0.0",
        "0.0 (8.66)",
        "0.0 (25)",
        "-",
    ]
    # Practical runs alone: the columns say "localised".
    only = analysis.markdown_table([practical], [0])
    assert "| loc. cert R=0 |" in only and "localised certified R-accuracy" in only


def test_csv_png_and_main(tmp_path, runs):
    with pytest.warns(UserWarning):
        summaries = [analysis.summarize_run(d) for d in runs]
    path_csv = tmp_path / "curves.csv"
    analysis.write_curves_csv(summaries, path_csv, radii=[0.0, 5.0, 9.0, 20.0])
    with open(path_csv) as f:
        table = list(csv.DictReader(f))
    got = [
        (r["run"], float(r["radius"]), float(r["certified_accuracy"])) for r in table
    ]
    assert got == [
        ("practical_s7", 0.0, 0.5),
        ("practical_s7", 5.0, 0.5),
        ("practical_s7", 9.0, 0.5),
        ("practical_s7", 20.0, 0.25),
        ("centre", 0.0, 0.5),
        ("centre", 5.0, 0.5),
        ("centre", 9.0, 0.0),
        ("centre", 20.0, 0.0),
    ]
    default_radii = analysis.curve_radii(summaries)
    assert 25.0 in default_radii and 5 * math.sqrt(3) in default_radii
    assert default_radii[-1] >= 26.0  # past the largest certified radius

    out = tmp_path / "out"
    with pytest.warns(UserWarning):
        assert (
            analyze_main(
                [str(d) for d in runs] + ["--radii", "0", "10", "--out", str(out)]
            )
            == 0
        )
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert "practical_s7" in (out / "summary.md").read_text()
    records = json.loads((out / "summary.json").read_text())
    assert records[0]["localised_certified"] == {"0": 0.5, "10": 0.25}
    assert records[0]["certified_meaning"] == "localised certified"
    assert records[0]["markers"]["paper s^2"] == {
        "radius": 25.0,
        "localised_certified": 0.25,
    }
    assert records[1]["certified"] == {"0": 0.5, "10": 0.0}
    assert records[0]["partial"] is False
    with open(out / "curves.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * len(default_radii)


def _timed(rows, seconds):
    return [
        dict(r, dataset_index=100 + r["index"], seconds=t)
        for r, t in zip(rows, seconds, strict=True)
    ]


def test_seconds_per_image_and_the_images_runs_share(tmp_path, capsys):
    long = write_run(
        tmp_path / "long",
        dict(mode="practical", size=5, channels=3, sigma=7.0, num_images=4),
        _timed(
            PRACTICAL_ROWS,
            [
                {"attack": 9.0, "certify": 30.0},  # the first image compiles
                {"attack": 1.0, "certify": 3.0},
                {"attack": 2.0, "certify": 4.0},
                {"attack": 1.5, "certify": 5.0},
            ],
        ),
    )
    short = write_run(
        tmp_path / "short",
        dict(mode="center", size=5, channels=3, sigma=7.0, num_images=4),
        _timed(CENTER_ROWS, [{"window": 0.5, "certify": 2.0}, {"certify": 1.0}]),
    )
    whole = analysis.summarize_run(long)
    assert whole.seconds_per_image == {"attack": 1.75, "certify": 4.5, "total": 6.25}
    assert analysis.summarize_run(short).seconds_per_image == {
        "window": 0.5,
        "certify": 1.5,
        "total": 1.75,
    }
    common = analysis.common_images([long, short])
    assert common == {100, 101}
    on_common = analysis.summarize_run(long, common)
    assert on_common.num_images == 2 and on_common.restricted_to == 2
    assert not on_common.partial  # 2 of its 4 images, by choice
    assert on_common.clean_accuracy == 1.0 and whole.clean_accuracy == 0.75
    table = analysis.markdown_table([on_common], [0])
    assert "| 2 of 2 common |" in table and table.split("\n")[2].endswith("| 21.5 |")
    phases = analysis.seconds_table([whole, analysis.summarize_run(short)])
    assert phases.split("\n")[0] == "| run | mode | attack | certify | window | total |"
    assert "| short | center | - | 1.5 | 0.5 | 1.75 |" in phases

    assert analyze_main([str(long), str(short), "--common"]) == 0
    printed = capsys.readouterr().out
    assert (
        "| 2 of 2 common |" in printed
        and "| long | practical | 9 | 30 |" not in printed
    )
    assert "| long | practical | 5 | 16.5 | - | 21.5 |" in printed

    unmatched = write_run(
        tmp_path / "old", dict(mode="center", size=5, channels=3), CENTER_ROWS
    )
    with pytest.raises(ValueError, match="no integer 'dataset_index'"):
        analysis.common_images([long, unmatched])
    with pytest.raises(ValueError, match="none of its rows"):
        analysis.summarize_run(short, frozenset({7}))
    bad = write_run(
        tmp_path / "bad",
        dict(mode="center", size=5, channels=3),
        _timed(CENTER_ROWS[:1], [{"certify": -1.0}]),
    )
    with pytest.raises(ValueError, match="seconds\\['certify'\\] must be >= 0"):
        analysis.summarize_run(bad)


def test_bad_run_dirs(tmp_path):
    with pytest.raises(ValueError, match="run.json"):
        analysis.summarize_run(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        analysis.summarize_run(tmp_path / "none")
    bad = write_run(tmp_path / "bad", dict(mode="center", channels=3), CENTER_ROWS)
    with pytest.raises(ValueError, match="'size'"):
        analysis.summarize_run(bad)
    empty = write_run(tmp_path / "empty", dict(mode="center", size=5, channels=3), [])
    with pytest.raises(ValueError, match="no result rows"):
        analysis.summarize_run(empty)
    (empty / "rows.jsonl").unlink()
    with pytest.raises(ValueError, match="no rows.jsonl or shard files"):
        analysis.summarize_run(empty)
    with pytest.raises(ValueError, match="summaries"):
        analysis.markdown_table([], [0.0])


def test_every_row_file_is_read_and_a_short_run_is_partial(tmp_path):
    """A multi-process run whose merge never happened, resumed single-process."""
    run = write_run(
        tmp_path / "run",
        dict(mode="center", size=5, channels=3, config=dict(num_images=6)),
        [CENTER_ROWS[0]],
    )
    shard = dict(CENTER_ROWS[1], index=3)
    (run / "rows-001-of-002.jsonl").write_text(json.dumps(shard) + "\n")
    summary = analysis.summarize_run(run)
    assert summary.num_images == 2 and summary.expected_images == 6
    assert summary.partial
    table = analysis.markdown_table([summary], [0])
    assert "| 2/6 (partial) |" in table
    # The same row in the merged file and a shard counts once.
    (run / "rows-000-of-002.jsonl").write_text(json.dumps(CENTER_ROWS[0]) + "\n")
    assert analysis.summarize_run(run).num_images == 2


def test_duplicate_rows_are_refused(tmp_path, capsys):
    run = write_run(
        tmp_path / "dup",
        dict(mode="center", size=5, channels=3),
        [CENTER_ROWS[0], CENTER_ROWS[1], CENTER_ROWS[1]],
    )
    with pytest.raises(ValueError, match="two rows for index 1"):
        analysis.summarize_run(run)
    with pytest.raises(ValueError, match="several rows for index"):
        analysis.summarize(
            dict(mode="center", size=5, channels=3), CENTER_ROWS * 2, "twice"
        )
    # The command line answers in one line, exit status 2.
    assert analyze_main([str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "index 1" in err[0]


def test_analyze_mistakes_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MRS_DEBUG", raising=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    for args in ([str(tmp_path / "none")], [str(tmp_path / "bad")]):
        assert analyze_main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
    with pytest.raises(ValueError):
        analyze_main([str(tmp_path / "bad"), "--debug"])


def _text_boxes(fig):
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    labels = [t.get_window_extent(renderer) for t in ax.texts]
    legend = ax.get_legend().get_window_extent(renderer)
    others = [ax.xaxis.label.get_window_extent(renderer)] + [
        t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()
    ]
    return labels, legend, others


@pytest.mark.parametrize("log_x", [False, True])
def test_plot_labels_of_several_patch_sizes_do_not_overlap(log_x):
    import matplotlib.pyplot as plt

    from mrs_jax.report import _plots as plots

    summaries = []
    for size, radius in ((3, 4.0), (5, 9.0), (9, 30.0)):
        rows = [dict(CENTER_ROWS[0], radius=radius), CENTER_ROWS[1]]
        config = dict(mode="practical", size=size, channels=3, sigma=3.0)
        rows = [dict(r, covered=True) for r in rows]
        summaries.append(analysis.summarize(config, rows, f"s = {size}"))
    fig = plots.figure(summaries, log_x=log_x)
    try:
        fig.canvas.draw()
        labels, legend, others = _text_boxes(fig)
        # s*sqrt(C) and s^2 for each of three sizes, but 9^2 = 81: past every
        # certified radius (30), it is named in the legend instead.
        assert len(labels) == 5
        legend_texts = (
            [t.get_text() for t in fig.legends[0].get_texts()]
            if fig.legends
            else [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        )
        assert any("81: beyond every certified radius" in t for t in legend_texts)
        for i, box in enumerate(labels):
            assert not box.overlaps(legend)
            for other in labels[i + 1 :]:
                assert not box.overlaps(other), (box, other)
        for box in others:
            assert not box.overlaps(legend)
        assert "localised certified" in fig.axes[0].get_ylabel()
    finally:
        plt.close(fig)


def test_a_practical_row_without_covered_is_refused(tmp_path):
    """The row is not counted as covered."""
    rows = [
        {k: v for k, v in r.items() if k != "covered"} if r["index"] == 3 else r
        for r in PRACTICAL_ROWS
    ]
    run = write_run(
        tmp_path / "uncovered",
        dict(mode="practical", size=5, channels=3, sigma=7.0, num_images=4),
        rows,
    )
    with pytest.raises(ValueError, match=r"rows\[3\] has no 'covered'"):
        analysis.summarize_run(run)


def test_analyze_refuses_rows_past_num_images(tmp_path, capsys):
    """A fifth row in a 4-image run is named, not counted."""
    extra = dict(PRACTICAL_ROWS[0], index=4)
    run = write_run(
        tmp_path / "five",
        dict(mode="practical", size=5, channels=3, sigma=7.0, num_images=4),
        [*PRACTICAL_ROWS, extra],
    )
    with pytest.raises(ValueError, match=r"index 4 is outside.*num_images=4"):
        analysis.summarize_run(run)
    assert analyze_main([str(run)]) == 2
    assert "index 4" in capsys.readouterr().err


def test_masked_noise_double_masking_fills_cert_at_target():
    # Its rows carry `certified` at the target radius, not `certified_at_target`.
    rows = [
        dict(index=i, label=1, prediction=p, certified=c, radius=8.66, num_samples=100)
        for i, (p, c) in enumerate([(1, True), (1, False), (2, True), (1, True)])
    ]
    config = dict(mode="smoothed_double_masking", size=5, channels=3, sigma=7.0,
                  target_radius=8.66)  # fmt: skip
    summary = analysis.summarize(config, rows, "sdm")
    assert summary.target_accuracy == 0.5
    assert "| 50.0 |" in markdown_table([summary], [0.0])


def test_the_plot_axes_fit_the_curves():
    """A low curve is not drawn under a 100% ceiling, and the radius axis stops
    past the last certified radius and s*sqrt(C), not at a far s^2."""
    import matplotlib.pyplot as plt

    from mrs_jax.report import _plots as plots

    rows = [dict(r, covered=True) for r in CENTER_ROWS]  # 50% at R=0, radii 5, 7
    config = dict(mode="practical", size=5, channels=3, sigma=3.0)
    summary = analysis.summarize(config, rows, "low")
    fig = plots.figure([summary])
    try:
        bottom, top = fig.axes[0].get_ylim()
        assert (bottom, top) == (0.0, 60.0)
        left, right = fig.axes[0].get_xlim()
        assert right == pytest.approx(1.08 * 5 * math.sqrt(3))  # 9.35 < 25
    finally:
        plt.close(fig)
