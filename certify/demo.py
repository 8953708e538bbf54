"""The embedded digits demo: ``python -m certify.demo`` (see mrs_jax.demo)."""

from mrs_jax.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
