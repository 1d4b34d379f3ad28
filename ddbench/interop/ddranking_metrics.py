"""DD-Ranking's view of a distilled set (NUS-HPC-AI-Lab/DD-Ranking, v0.2.0): how much of
the full data's hard-label accuracy the set recovers, how far it beats random real images,
and one score that combines both.

With accuracies as fractions in [0, 1] (ddranking 0.2.0, ``ddranking/metrics/soft_label.py``
lines 561-564 and ``hard_label.py`` lines 380-383):

- Hard Label Recovery: ``HLR = acc_full_hard - acc_syn_hard``: a model trained on the whole
  training set with hard labels, against one trained on the distilled set with hard labels
  (lower is better);
- Improvement Over Random: ``IOR = acc_syn - acc_random``: the distilled set against random
  real images at the same IPC, both under the run's evaluator (soft labels for ``relabel``;
  higher is better);
- ``alpha = w * IOR - (1 - w) * HLR`` with ``w = 0.5``, and the DD-Ranking score (its
  Label-Robust Score) ``(exp(alpha) - exp(-1)) / (e - exp(-1))``, in [0, 1] with 0.5 for
  alpha = 0 (no gain over random, nothing lost to full data net).

DD-Ranking's code multiplies the accuracies by 100 before the exponential
(``ddranking/utils/meter.py`` line 168), which takes the score out of [0, 1]; we follow the
formula of its README, with fractions. Our full-data model is the observer recipe's model of
the verifier architecture trained on the full training split (cached like any observer).
"""

from __future__ import annotations

import math
from typing import Any

WEIGHT = 0.5
FORMULA = ("HLR = acc_full_hard - acc_syn_hard; IOR = acc_syn - acc_random (same evaluator); "
           "alpha = w*IOR - (1-w)*HLR, w = 0.5; score = (exp(alpha) - exp(-1)) / (e - exp(-1)); accuracies as fractions")


def ddranking_score(hlr: float, ior: float, weight: float = WEIGHT) -> float:
    alpha = weight * ior - (1.0 - weight) * hlr
    return (math.exp(alpha) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def ddranking_metrics(syn: float, syn_hard: float, random: float, full_hard: float) -> dict[str, Any]:
    """The three figures (HLR and IOR in percentage points, the score in [0, 1]) from mean
    accuracies in percent."""
    hlr = (full_hard - syn_hard) / 100.0
    ior = (syn - random) / 100.0
    return {"hlr": round(100.0 * hlr, 4), "ior": round(100.0 * ior, 4), "score": round(ddranking_score(hlr, ior), 4),
            "accuracy": syn, "hard_accuracy": syn_hard, "random_accuracy": random, "full_hard_accuracy": full_hard,
            "weight": WEIGHT, "formula": FORMULA}
