"""Certification configs by name: ``mrs-certify --config digits`` is ``digits.py``."""
