"""Tables, R-accuracy curves (PNG) and CSV from certification run directories.

Usage: ``python -m certify.analyze RUN_DIR... [--radii 0 1 2] [--out DIR]``
"""

from mrs_jax.analysis import main

if __name__ == "__main__":
    raise SystemExit(main())
