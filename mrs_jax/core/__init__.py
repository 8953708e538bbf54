"""The small core every stage stands on.

Four namespaces, each one idea: ``checks`` (argument checks that name the
argument), ``sharding`` (devices, meshes and batch placement), ``runlock`` (the
OS lock of a run directory) and ``configfile`` (Python config files and their
``--config.FIELD=value`` overrides); and the result-row schema (``ROW_FIELDS``
and the constants every stage shares).
"""

from . import (
    _checks as checks,
    _configfile as configfile,
    _runlock as runlock,
    _sharding as sharding,
)
from ._progress import LineProgress as LineProgress, progress_bar as progress_bar
from ._schema import (
    ABSTAIN as ABSTAIN,
    ATTACKED_MODES as ATTACKED_MODES,
    EVERY_PATCH_POSITION as EVERY_PATCH_POSITION,
    LOCALIZATION_OUTCOMES as LOCALIZATION_OUTCOMES,
    MAX_DRAWS as MAX_DRAWS,
    MODES as MODES,
    ROW_FIELDS as ROW_FIELDS,
    RowField as RowField,
    describe as describe_rows,
    field_names as row_field_names,
)
from ._sharding import use_cpu_cores as use_cpu_cores

__all__ = [
    "ABSTAIN",
    "ATTACKED_MODES",
    "EVERY_PATCH_POSITION",
    "LOCALIZATION_OUTCOMES",
    "LineProgress",
    "MAX_DRAWS",
    "MODES",
    "ROW_FIELDS",
    "RowField",
    "checks",
    "configfile",
    "describe_rows",
    "progress_bar",
    "row_field_names",
    "runlock",
    "sharding",
    "use_cpu_cores",
]
