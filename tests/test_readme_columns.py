"""The README's "Reading the results" defines every column the tables print."""

import re
from pathlib import Path

from mrs_jax.report import _analysis as analysis, markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
ROWS = [
    dict(index=0, label=1, prediction=1, radius=5.0, certified=True, covered=True,
         certified_at_target=True, num_samples=100, target_radius=1.0),
    dict(index=1, label=2, prediction=0, radius=7.0, certified=True, covered=True,
         certified_at_target=False, num_samples=200, target_radius=1.0),
]
CONFIG = dict(mode="practical", size=5, channels=3, sigma=3.0, target_radius=1.0)


def _defined() -> set[str]:
    text = README.read_text()
    start = text.index("## Reading the results")
    section = text[start : text.index("\n## ", start + 1)]
    names = set()
    for cell in re.findall(r"^\| ([^|]*) \|", section, flags=re.M):
        names.update(re.findall(r"`([^`]*)`", cell))
    return names


def _key(column: str) -> str:
    """The README's name for a printed column (radii written generically)."""
    if re.fullmatch(r"(loc\. )?cert R=[0-9.]+", column):
        return "loc. cert R=r"
    match = re.fullmatch(r"(loc\. )?cert (R=s\*sqrt\(C\)|R=s\^2|at target)", column)
    return f"... {match.group(2)}" if match else column


def test_every_printed_column_is_defined_in_the_readme():
    summary = analysis.summarize(CONFIG, ROWS, "demo")
    header = markdown_table([summary], [0.0, 1.5]).splitlines()[0]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert "draws/image" in columns and "loc. cert R=1.5" in columns
    defined = _defined()
    missing = [c for c in columns if _key(c) not in defined]
    assert missing == [], missing


def test_the_check_sees_an_undefined_column():
    assert _key("loc. cert R=3") == "loc. cert R=r"
    assert "a column nobody wrote" not in _defined()
