"""River's drift detectors without the rest of ``river.drift``: its ``__init__`` imports River's datasets
(scikit-learn, SQLAlchemy) and KSWIN (SciPy's statistics), ~1.5 s that no detector here needs. A detector's
own submodule imports alone, under its real name (:mod:`detectors.bare_import`): the classes are River's own
(state written by :mod:`detectors.river_state` names them the same).

>>> ADWIN = detector_class("ADWIN")
>>> ADWIN().update(0) is None, ADWIN.__module__
(True, 'river.drift.adwin')
"""

from __future__ import annotations

import functools

from detectors.bare_import import bare_package

PACKAGE = "river.drift"
BINARY = ("DDM", "HDDMA", "HDDMW")  # the detectors of river.drift.binary used here


@functools.cache
def detector_class(name: str) -> type:
    """River's drift detector ``name``: ``ADWIN``, ``PageHinkley`` or one of :data:`BINARY`."""
    with bare_package(PACKAGE):
        if name == "ADWIN":
            from river.drift.adwin import ADWIN

            return ADWIN
        if name == "PageHinkley":
            from river.drift.page_hinkley import PageHinkley

            return PageHinkley
        if name in BINARY:
            from river.drift import binary

            return getattr(binary, name)
    raise ValueError(f"unknown River drift detector {name!r}")
