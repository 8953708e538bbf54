"""``python -m train`` in a checkout (``mrs-train`` installed); configs in configs/."""
