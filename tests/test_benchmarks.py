"""The benchmark suite in smoke mode: every section present, rates positive and
finite, the Markdown well formed. No timing assertions."""

import json
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import suite
    finally:
        sys.path.remove(str(BENCHMARKS))
    out = tmp_path_factory.mktemp("suite")
    suite.main(["--smoke", "--out", str(out)])
    return (
        suite,
        json.loads((out / "suite.json").read_text()),
        (out / "suite.md").read_text(),
    )


def _positive(value):
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _numbers(value)
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield tree


def test_every_section_and_the_machine(suite_run):
    suite, result, _ = suite_run
    for section in suite.SECTIONS:
        assert section in result, section
        assert _positive(result["section_seconds"][section])
    machine = result["machine"]
    for field in ("cpu_model", "cpu_count", "jax", "backend", "devices", "date"):
        assert machine[field], field
    assert all(math.isfinite(v) for v in _numbers(result))


def test_rates_are_positive(suite_run):
    _, result, _ = suite_run
    rates = []
    for r in result["smoothing"]:
        rates += [r["forward_images_per_s"], r["sample_counts_samples_per_s"]]
    memory = result["memory"]
    for r in memory["rows"]:
        rates += [r["samples_per_s"], r["peak_rss_mib"]]
    assert memory["recompiles"] == 0  # num is traced: one program for every n
    assert memory["same_compiled_program"]
    rates += [r["variants_per_s"] for r in result["localisation"]]
    assert {r["method"] for r in result["localisation"]} == {"telea", "harmonic"}
    for setup in result["end_to_end"]["setups"]:
        rates.append(setup["certify_samples_per_s"])
        rates += list(setup["seconds_per_image"].values())
        rates.append(setup["defence_seconds_paper_settings"])
    scaling = result["scaling"]["rows"]
    assert [r["devices"] for r in scaling] == [1, 2]
    rates += [r["samples_per_s"] for r in scaling]
    utilisation = result["utilisation"]
    rates += list(utilisation["matmul_flops_per_s"].values())
    for r in utilisation["rows"]:
        rates += [r["flops_per_sample"], r["achieved_flops_per_s"]]
    assert rates and all(_positive(v) for v in rates), rates


def test_markdown_renders(suite_run):
    _, _, text = suite_run
    assert text.startswith("# mrs-jax benchmark suite (smoke)")
    for heading in (
        "Smoothing",
        "memory",
        "Localisation",
        "End to end",
        "Scaling",
        "FLOP",
    ):
        assert any(
            line.startswith("## ") and heading in line for line in text.splitlines()
        ), heading
    # Every table row has as many cells as its header; separators are well formed.
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) >= 6
    for table in tables:
        width = table[0].count("|")
        assert set(table[1]) <= set("|-: "), table[1]
        assert all(row.count("|") == width for row in table), table
        assert "nan" not in "".join(table).lower()
