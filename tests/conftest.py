"""Test set-up, before jax is imported anywhere: four fake CPU devices, and
cheap XLA optimisation.

The suite is compile-bound (small models, small n), so XLA's backend
optimisation and LLVM's expensive passes cost more than they save: without
them the compile-bound files run in about two thirds of the time. XLA's CPU
fusion emitters (the MLIR ones, its default) compile slower than its older
emitters: without them ``test_batched.py`` and ``test_vote_attack.py`` run in
39 s instead of 60 s. The flags
reach the subprocesses the tests start through the environment. They are set
here only; the library, benchmarks and users keep XLA's defaults. They change
float rounding (not the programs' meaning): a sum near a decision can fall the
other way, so rows compared with rows written under the defaults are computed
in a subprocess with the defaults (``test_committed_rows.py``).
"""

import os

_TEST_XLA_FLAGS = (
    "--xla_force_host_platform_device_count=4",
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)
os.environ["XLA_FLAGS"] = " ".join(
    (os.environ.get("XLA_FLAGS", ""), *_TEST_XLA_FLAGS)
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
