"""The package surface: every public name resolves; import stays light."""

import subprocess
import sys

import mrs_jax


def test_every_public_name_resolves():
    for name in mrs_jax.__all__:
        assert getattr(mrs_jax, name) is not None, name


def test_functions_named_like_their_modules_stay_functions():
    import mrs_jax.gradcam  # noqa: F401  (loading the submodules must not shadow)
    import mrs_jax.localize  # noqa: F401

    for name in ("localize", "gradcam", "certify", "predict"):
        assert callable(getattr(mrs_jax, name)), name
        assert not isinstance(getattr(mrs_jax, name), type(mrs_jax)), name


def test_unknown_names_raise_attribute_error():
    try:
        mrs_jax.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_not_pull_heavy_optional_modules():
    code = (
        "import sys, mrs_jax; "
        "heavy = [m for m in ('flax', 'cv2', 'matplotlib', 'tensorflow_datasets', "
        "'tensorflow', 'scipy.stats', 'orbax') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
