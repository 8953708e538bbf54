"""Training entry point: ``python -m train --config train/configs/digits.py``."""
