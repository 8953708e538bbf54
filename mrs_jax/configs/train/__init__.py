"""Training configs by name: ``mrs-train --config digits`` loads ``digits.py``."""
