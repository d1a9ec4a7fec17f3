"""Evaluation of calibrated thresholds: the paper's protocol, peers and reports.

``evaluate`` runs R random calibration/test splits from per-volume
statistics (docs: checking the promise); ``write_report`` writes ``summary.json``, ``report.md``
and, with matplotlib installed (the ``plot`` extra), PNG figures.
``evaluate_groups`` and ``evaluate_classes`` run it per group (Mondrian) and
per class (with the family-wise coverage).
"""

from .methods import CALIBRATED, DEFAULT_METHODS
from .protocol import Evaluation, MethodResult, binomial_se, evaluate
from .report import write_report
from .sets import EvaluationSet, evaluate_classes, evaluate_groups

__all__ = ["CALIBRATED", "DEFAULT_METHODS", "Evaluation", "EvaluationSet", "MethodResult", "binomial_se", "evaluate",
           "evaluate_classes", "evaluate_groups", "write_report"]
