"""Patch attacks on the base classifier and on the defence (MRS_SPEC.md s. 5;
docs/attacks.md).
"""

from ._adaptive import (
    OBJECTIVES as OBJECTIVES,
    adaptive_patch_attack as adaptive_patch_attack,
)
from ._engine import PatchAttackResult as PatchAttackResult
from ._pgd import patch_attack as patch_attack
from ._soft_vote import SoftVote as SoftVote, soft_vote as soft_vote
from ._vote import GOALS as GOALS, vote_patch_attack as vote_patch_attack
from ._vote_judge import (
    DEFENCE_OUTCOMES as DEFENCE_OUTCOMES,
    OUTCOMES as OUTCOMES,
    VoteAttackResult as VoteAttackResult,
)

__all__ = [
    "DEFENCE_OUTCOMES",
    "GOALS",
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
