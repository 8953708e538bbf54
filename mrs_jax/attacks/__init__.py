"""Patch attacks on the base classifier and on the defence (MRS_SPEC.md s. 5).
"""

from ._adaptive import OBJECTIVES as OBJECTIVES
from ._adaptive import adaptive_patch_attack as adaptive_patch_attack
from ._pgd import PatchAttackResult as PatchAttackResult
from ._pgd import patch_attack as patch_attack
from ._vote import OUTCOMES as OUTCOMES
from ._vote import SoftVote as SoftVote
from ._vote import VoteAttackResult as VoteAttackResult
from ._vote import soft_vote as soft_vote
from ._vote import vote_patch_attack as vote_patch_attack

__all__ = [
    "OBJECTIVES",
    "OUTCOMES",
    "PatchAttackResult",
    "SoftVote",
    "VoteAttackResult",
    "adaptive_patch_attack",
    "patch_attack",
    "soft_vote",
    "vote_patch_attack",
]
