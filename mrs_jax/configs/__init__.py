"""The shipped config files, installed with the package.

``train/`` holds the training configs (each ``get_config(smoke=False) ->
TrainConfig``), ``certify/`` the certification configs (``-> JobConfig``). The
entry points take them by name (``mrs-certify --config cifar10_cpu``) or by path;
:func:`mrs_jax.configfile.resolve` maps a name to its file. In a checkout,
``train/configs/*.py`` and ``certify/configs/*.py`` re-export these files so the
paths in the README and the benchmarks keep working.

A variant config derives from its base (``configfile.derive``) and names only
what differs; ``_smoke.py`` holds what the root configs' smoke variants share.
"""
