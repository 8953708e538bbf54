"""Every command's ``--help`` documents every option, in one spelling, as plain text."""

import re
from pathlib import Path

import pytest

from mrs_jax.commands import analyze, certify, demo, help_text, train
from mrs_jax.core import configfile

README = Path(__file__).resolve().parents[1] / "README.md"
PROGRAMS = {"train": train, "certify": certify, "analyze": analyze, "demo": demo}


def _help(program, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        program.run(["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_help_is_plain_text_and_documents_every_option(name, capsys):
    text = _help(PROGRAMS[name], capsys)
    assert "``" not in text and ":func:" not in text and ":mod:" not in text
    options = re.findall(r"^  (-[-\w]+)", text, flags=re.M)
    assert "--debug" in options
    # One spelling: words joined by underscores, as in --config.FIELD.
    assert all(re.fullmatch(r"-h|--[a-z_]+", option) for option in options), options
    undocumented = [a.dest for a in PROGRAMS[name]._parser()._actions if not a.help]
    assert not undocumented
    # The description keeps its lines: no line of prose joined into runs of spaces.
    description = re.split(r"^(?:options|positional arguments):", text, flags=re.M)[0]
    description = description.split("\n\n", 1)[1]
    assert not re.search(r"\S {3,}\S", description), description


def test_certify_usage_example_keeps_its_line_breaks(capsys):
    text = _help(certify, capsys)
    assert "--checkpoint runs/digits \\\n" in text


def test_help_text_removes_markup_only():
    doc = "Run ``mrs-train`` (:func:`mrs_jax.train`)::\n\n    mrs-train --x\n"
    assert help_text(doc) == "Run mrs-train (mrs_jax.train):\n\n    mrs-train --x\n"


def test_readme_names_every_shipped_training_config():
    text = README.read_text()
    start = text.index("Train a base classifier (shipped configs:")
    named = re.findall(r"`(\w+)`", text[start : text.index(";", start)])
    assert sorted(named) == sorted(configfile.shipped_names("train"))
