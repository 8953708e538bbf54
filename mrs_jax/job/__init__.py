"""The certification job: attack, localise, certify each image, one row each."""

from ._config import JobConfig as JobConfig
from ._defence import defend as defend
from ._patches import attacked_images as attacked_images
from ._pipeline import image_row as image_row
from ._processes import ProcessesDisagreeError as ProcessesDisagreeError
from ._progress import summary as summary
from ._record import weights_fingerprint as weights_fingerprint
from ._run import MODES as MODES, run as run, validate as validate
from ._run_dir import check_free as check_free, check_out_dir as check_out_dir

__all__ = [
    "JobConfig",
    "MODES",
    "ProcessesDisagreeError",
    "attacked_images",
    "check_free",
    "check_out_dir",
    "defend",
    "image_row",
    "run",
    "summary",
    "validate",
    "weights_fingerprint",
]
