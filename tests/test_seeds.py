"""Seeds are refused before anything is written when no key can be made of them."""

import dataclasses

import pytest
from _job_helpers import tiny_config

from mrs_jax.training import TrainConfig


@pytest.mark.parametrize("field", ["seed", "image_seed"])
def test_a_job_seed_past_32_bits_is_refused_by_name(field):
    with pytest.raises(ValueError, match=f"{field} must be <= 2\\*\\*32 - 1"):
        tiny_config(**{field: 2**63})
    assert getattr(tiny_config(**{field: 2**32 - 1}), field) == 2**32 - 1


def test_a_training_seed_past_32_bits_is_refused():
    with pytest.raises(ValueError, match="seed must be <= 2\\*\\*32 - 1"):
        dataclasses.replace(TrainConfig(), seed=2**63)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        dataclasses.replace(TrainConfig(), seed=-1)
