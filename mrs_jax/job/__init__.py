"""The certification job: attack, localise, certify each image, one row each.
"""

from ._config import JobConfig as JobConfig
from ._pipeline import defend as defend
from ._pipeline import image_row as image_row
from ._pipeline import localize as localize
from ._pipeline import localize_settings as localize_settings
from ._run import MODES as MODES
from ._run import run as run
from ._run import running_accuracies as running_accuracies
from ._run import validate as validate
from ._run_dir import check_free as check_free
from ._run_dir import check_out_dir as check_out_dir
from ._run_dir import hold as hold
from ._run_dir import lock_name as lock_name
from ._run_dir import model_record as model_record
from ._run_dir import read_run_file as read_run_file
from ._run_dir import weights_fingerprint as weights_fingerprint

__all__ = [
    "JobConfig",
    "MODES",
    "check_free",
    "check_out_dir",
    "defend",
    "hold",
    "image_row",
    "localize",
    "localize_settings",
    "lock_name",
    "model_record",
    "read_run_file",
    "run",
    "running_accuracies",
    "validate",
    "weights_fingerprint",
]
