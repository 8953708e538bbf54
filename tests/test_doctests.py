"""The ``Examples:`` blocks of the docstrings run and print what they show.

Every module of the package whose source holds a doctest (``>>>``) runs under
``doctest.testmod``; the core public functions must each carry an example.
"""

import doctest
import importlib
from pathlib import Path

import pytest

import mrs_jax
from mrs_jax import certification, localization

PACKAGE = Path(mrs_jax.__file__).resolve().parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(
    _module_name(path)
    for path in PACKAGE.rglob("*.py")
    if ">>>" in path.read_text(encoding="utf-8")
)

# The functions whose docstrings promise a runnable example.
WITH_EXAMPLES = (
    certification.certify,
    certification.predict,
    certification.sample_counts,
    certification.clopper_pearson_lower,
    certification.certified_radius,
    certification.square_mask,
    certification.unrestricted_radius,
    certification.patch_l2_bound,
    certification.certify_at,
    certification.schedule,
    certification.patchcleanser_masks,
    localization.joint_vote,
    localization.best_window,
)


def test_the_core_functions_carry_examples():
    for function in WITH_EXAMPLES:
        assert "Examples:" in function.__doc__, function.__qualname__
        assert ">>>" in function.__doc__, function.__qualname__
    assert {function.__module__ for function in WITH_EXAMPLES} <= set(MODULES)


def test_the_scan_finds_modules_with_doctests():
    assert "mrs_jax.certification._smoothing" in MODULES
    assert "mrs_jax.localization._joint_vote" in MODULES
    assert "mrs_jax.core._checks" not in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_of_a_module_pass(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, report=False)
    assert result.attempted > 0, f"{name} has '>>>' but no doctest ran"
    assert result.failed == 0, f"{result.failed} doctest(s) of {name} failed"
