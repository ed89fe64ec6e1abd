"""Calibrated confidence for suggestions and auto/review routing (issue 3).

``features`` (pure feature functions), ``labels`` (gold → training labels), ``metrics`` (Brier, ECE,
AUROC, coverage), ``model`` (verified loading and the Engine's ``scorer``), ``report`` (calibration
report and plots for ``btxcode eval``). Training lives in :mod:`nlp.training.train_confidence`.
"""
