"""``python -m certify``, ``certify.analyze``, ``certify.demo`` in a checkout.

Installed, they are ``mrs-certify``, ``mrs-analyze`` and ``mrs-demo``; the programs
live in :mod:`mrs_jax.commands` (the demo too), the configs in
``mrs_jax/configs`` (``configs/`` here re-exports them by path).
"""
