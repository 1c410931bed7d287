"""From an inter-task affinity matrix to candidate task groups (docs/affinity.md).

* ``read_affinity`` / ``affinity_from_frame``: the long format (source, target, value[, epoch,
  steps]) checked and averaged into an ``Affinity`` (``matrix[i, j]`` = Z(source i -> target j)).
* ``tag_exact``: TAG's network selection (Fifty et al. 2021), exact, for every number of groups.
* ``candidate_groups``: the workflow's entry point: exact up to 12 tasks, clustering plus local
  search beyond (hundreds of tasks).
* ``sample_subsets`` / ``higher_order_affinity``: the sampled higher-order affinity of Li et al.
  (KDD 2023).
"""

from .clustering import METHODS, candidate_groups
from .higher_order import higher_order_affinity, pair_coverage, sample_subsets, subset_frame
from .selection import TAG_SINGLETON, Grouping, evaluate, member_scores, tag_exact
from .table import Affinity, AffinityFormatError, affinity_from_frame, read_affinity

__all__ = [
    "METHODS",
    "TAG_SINGLETON",
    "Affinity",
    "AffinityFormatError",
    "Grouping",
    "affinity_from_frame",
    "candidate_groups",
    "evaluate",
    "higher_order_affinity",
    "member_scores",
    "pair_coverage",
    "read_affinity",
    "sample_subsets",
    "subset_frame",
    "tag_exact",
]
