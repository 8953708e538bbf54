"""Result rows: the append-only rows files and the accuracy metrics read from
them (MRS_SPEC.md s. 6).
"""

from ._files import RowsChangedError as RowsChangedError
from ._files import Writer as Writer
from ._files import all_rows as all_rows
from ._files import check_rows as check_rows
from ._files import merge as merge
from ._files import read as read
from ._files import repair as repair
from ._files import row_files as row_files
from ._files import selection as selection
from ._files import shard_path as shard_path
from ._metrics import ABSTAIN as ABSTAIN
from ._metrics import ATTACKED_MODES as ATTACKED_MODES
from ._metrics import MODES as MODES
from ._metrics import accuracy_curve as accuracy_curve
from ._metrics import base_accuracy as base_accuracy
from ._metrics import certified_accuracy as certified_accuracy
from ._metrics import certified_radii as certified_radii
from ._metrics import clean_accuracy as clean_accuracy
from ._metrics import coverage_rate as coverage_rate
from ._metrics import empirical_accuracy as empirical_accuracy
from ._metrics import localization_rates as localization_rates
from ._metrics import mask_covers as mask_covers
from ._metrics import mean_num_samples as mean_num_samples
from ._metrics import radius_markers as radius_markers
from ._metrics import seconds_per_image as seconds_per_image
from ._metrics import target_accuracy as target_accuracy

__all__ = [
    "ABSTAIN",
    "ATTACKED_MODES",
    "MODES",
    "RowsChangedError",
    "Writer",
    "accuracy_curve",
    "all_rows",
    "base_accuracy",
    "certified_accuracy",
    "certified_radii",
    "check_rows",
    "clean_accuracy",
    "coverage_rate",
    "empirical_accuracy",
    "localization_rates",
    "mask_covers",
    "mean_num_samples",
    "merge",
    "radius_markers",
    "read",
    "repair",
    "row_files",
    "seconds_per_image",
    "selection",
    "shard_path",
    "target_accuracy",
]
