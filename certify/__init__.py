"""Entry points: `python -m certify`, `certify.analyze` and `certify.demo`."""
