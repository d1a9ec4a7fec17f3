"""Evaluation of calibrated thresholds: the paper's protocol, peers and reports.

``evaluate`` runs R random calibration/test splits from per-volume
statistics (SPEC 3); ``write_report`` writes ``summary.json``, ``report.md``
and, with matplotlib installed (the ``plot`` extra), PNG figures.
"""

from .methods import CALIBRATED, DEFAULT_METHODS
from .protocol import Evaluation, MethodResult, binomial_se, evaluate
from .report import write_report

__all__ = ["CALIBRATED", "DEFAULT_METHODS", "Evaluation", "MethodResult", "binomial_se", "evaluate", "write_report"]
