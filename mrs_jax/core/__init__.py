"""The small core every stage stands on.

Four namespaces, each one idea: ``checks`` (argument checks that name the
argument), ``sharding`` (devices, meshes and batch placement), ``runlock`` (the
OS lock of a run directory) and ``configfile`` (Python config files and their
``--config.FIELD=value`` overrides).
"""

from . import _checks as checks
from . import _configfile as configfile
from . import _runlock as runlock
from . import _sharding as sharding
from ._sharding import use_cpu_cores as use_cpu_cores

__all__ = ["checks", "configfile", "runlock", "sharding", "use_cpu_cores"]
