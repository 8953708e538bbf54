"""The package surface: every public name resolves and is typed; import stays
light; names are plain imports; the library leaves the process's matplotlib alone."""

import ast
import configparser
import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

import mrs_jax

REPO = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves():
    for name in mrs_jax.__all__:
        assert getattr(mrs_jax, name) is not None, name


def test_every_public_name_is_a_plain_import():
    # No string table and no module-level __getattr__: what a reader and a type
    # checker see in mrs_jax/__init__.py is what there is.
    tree = ast.parse(Path(mrs_jax.__file__).read_text())
    seen = {}  # name -> stage package it is imported from
    for node in tree.body:
        assert not isinstance(node, ast.FunctionDef), node.name
        if isinstance(node, ast.ImportFrom) and node.module.startswith("mrs_jax"):
            for alias in node.names:
                seen[alias.asname or alias.name] = node.module
    assert set(mrs_jax.__all__) == set(seen), set(mrs_jax.__all__) ^ set(seen)
    assert all(module.count(".") == 1 for module in seen.values()), seen


def test_removed_names_are_gone():
    for name in ("certify_batch", "certify_at_batch", "patch_attack_batch"):
        assert name not in mrs_jax.__all__
        with pytest.raises(AttributeError, match=name):
            getattr(mrs_jax, name)
    assert "localize_batch" not in mrs_jax.__all__


@pytest.mark.parametrize(
    "name, stage",
    [
        ("localize", "localization"),
        ("gradcam", "localization"),
        ("double_masking", "certification"),
        ("smoothed_double_masking", "certification"),
    ],
)
def test_names_once_shared_with_a_module_are_plain_functions(name, stage):
    function = getattr(mrs_jax, name)
    assert isinstance(function, types.FunctionType)
    assert function is getattr(importlib.import_module(f"mrs_jax.{stage}"), name)


@pytest.mark.parametrize(
    "stage",
    ["core", "data", "models", "training", "localization", "certification",
     "attacks", "rows", "job", "report"],
)
def test_every_stage_face_names_what_it_exports(stage):
    face = importlib.import_module(f"mrs_jax.{stage}")
    assert face.__all__ == sorted(face.__all__)
    for name in face.__all__:
        assert name in vars(face), (stage, name)
    public = {n for n in vars(face) if not n.startswith("_")}
    assert public == set(face.__all__), public ^ set(face.__all__)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        mrs_jax.no_such_thing  # noqa: B018


def test_version_has_one_source():
    assert isinstance(mrs_jax.__version__, str)
    assert mrs_jax.__version__.count(".") == 2
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: mrs_jax.__version__"
    assert (Path(mrs_jax.__file__).parent / "py.typed").is_file()
    license_text = (REPO / "LICENSE").read_text()
    assert setup["metadata"]["license"] == "Apache-2.0"
    assert "Apache License" in license_text and "Version 2.0" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text


def test_import_does_not_pull_heavy_optional_modules():
    # Flax and optax load with the package: the models and the trainer are
    # classes of theirs, re-exported by plain imports. OpenCV, matplotlib,
    # tensorflow-datasets, scipy.stats and orbax load on first use.
    code = (
        "import sys, mrs_jax; "
        "heavy = [m for m in ('cv2', 'matplotlib', 'tensorflow_datasets', "
        "'tensorflow', 'scipy.stats', 'orbax.checkpoint') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_plotting_leaves_the_backend_and_pyplot_alone(tmp_path):
    # The caller picked a backend; drawing the curves must neither change it nor
    # load pyplot (whose global figure list would keep every figure alive).
    code = f"""
import sys
import matplotlib
matplotlib.use("svg")
from mrs_jax.report import _analysis as analysis, _plots as plots
rows = [
    dict(index=0, label=1, prediction=1, radius=5.0, certified=True, covered=True),
    dict(index=1, label=2, prediction=0, radius=7.0, certified=True, covered=True),
]
config = dict(mode="practical", size=5, channels=3, sigma=3.0)
summary = analysis.summarize(config, rows, "run")
fig = plots.figure([summary])
assert fig.axes and fig.axes[0].lines
plots.plot_curves([summary], {str(tmp_path / "curves.png")!r})
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_library_code_never_calls_matplotlib_use():
    for path in [*Path(mrs_jax.__file__).parent.rglob("*.py")]:
        assert "matplotlib.use(" not in path.read_text(), path
