"""Retired: merged into ``attack_comparison.py``, which takes the same arguments
(two or more run directories) and prints the same tables first.

This alias stays only until ``tests/test_vote_attack.py`` imports
``attack_comparison``; delete it then (HISTORY.md, "Retired scripts").
"""

from attack_comparison import compare, main

__all__ = ["compare", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
