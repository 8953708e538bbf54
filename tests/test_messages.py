"""Messages say what to fix: values are not rounded away, bfloat16 is a float."""

import jax.numpy as jnp
import numpy as np
import pytest

import mrs_jax


def test_a_value_just_outside_the_unit_range_is_shown_as_it_is():
    x = np.full((8, 8, 3), 0.5, np.float32)
    x[0, 0, 0] = 1.0001
    mask = mrs_jax.square_mask(x.shape, 2, 2, 3)
    with pytest.raises(ValueError, match=r"to 1\.0001\b"):
        mrs_jax.unrestricted_radius(x, mask)


def test_bfloat16_images_are_floats():
    x = jnp.full((8, 8, 3), 0.5, jnp.bfloat16)
    mask = mrs_jax.square_mask(x.shape, 2, 2, 3)
    assert mrs_jax.unrestricted_radius(x, mask) > 0


# --- model.json and model_kwargs -----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("num_classes", "ten", "field 'num_classes' must be an int >= 2, got 'ten'"),
        ("image_shape", [32, 32], "field 'image_shape' must be [H, W, C]"),
        ("model_kwargs", [["clamp", True]], "field 'model_kwargs' must be a JSON"),
        ("sigma", "seven", "field 'sigma' must be a number or null"),
    ],
)
def test_a_malformed_model_json_field_names_the_file_and_field(
    tmp_path, field, value, expected
):
    import json

    from _job_helpers import write_checkpoint

    workdir = write_checkpoint(tmp_path / "model")
    meta = json.loads((workdir / "model.json").read_text())
    meta[field] = value
    (workdir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="model.json: " + expected.replace("[", r"\[")):
        mrs_jax.load_classifier(workdir)


def test_an_unknown_model_kwarg_is_refused_naming_the_known_ones(tmp_path):
    import dataclasses
    import json

    from _job_helpers import write_checkpoint

    from mrs_jax.training import TrainConfig

    with pytest.raises(ValueError, match="model 'airbench' takes no clmp; it takes"):
        dataclasses.replace(TrainConfig(model="airbench"), model_kwargs={"clmp": 1})
    workdir = write_checkpoint(tmp_path / "model")
    meta = json.loads((workdir / "model.json").read_text())
    meta["model_kwargs"] = {"widthz": 3}
    (workdir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"model.json: model_kwargs: .* no widthz"):
        mrs_jax.load_classifier(workdir)


def test_a_mistyped_data_dir_says_the_folder_does_not_exist(tmp_path):
    missing = tmp_path / "cifar1"
    with pytest.raises(FileNotFoundError, match=r"data_dir .*cifar1 does not exist"):
        mrs_jax.dataset_source("cifar10", "test", data_dir=str(missing))
    assert not missing.exists()  # nothing was created there
