"""River's drift detectors without the rest of ``river.drift``: its ``__init__`` imports River's datasets
(scikit-learn, SQLAlchemy) and KSWIN (SciPy's statistics), ~1.5 s that no detector here needs.

While :func:`bare_package` is entered, ``river.drift`` (if not imported yet) is its bare package, ``__init__``
not run, so a detector's own submodule imports alone, under its real name: the classes are River's own (state
written by :mod:`detectors.river_state` names them the same), and a later ``import river.drift`` runs the
package as usual and finds the submodule already loaded.

>>> import sys
>>> ADWIN = detector_class("ADWIN")
>>> ADWIN().update(0) is None, ADWIN.__module__
(True, 'river.drift.adwin')
>>> from river import drift  # the whole package still imports, with the same class
>>> drift.ADWIN is ADWIN
True
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator

PACKAGE = "river.drift"
BINARY = ("DDM", "HDDMA", "HDDMW")  # the detectors of river.drift.binary used here


@functools.cache
def _spec() -> importlib.machinery.ModuleSpec:
    import river

    spec = importlib.machinery.PathFinder.find_spec(PACKAGE, list(river.__path__))
    assert spec is not None, "river.drift is part of River"
    return spec


@contextlib.contextmanager
def bare_package() -> Iterator[None]:
    """Inside: ``river.drift``'s submodules import without the package's ``__init__`` (unless it ran already)."""
    if PACKAGE in sys.modules:
        yield
        return
    bare = importlib.util.module_from_spec(_spec())
    sys.modules[PACKAGE] = bare
    try:
        yield
    finally:
        if sys.modules.get(PACKAGE) is bare:
            del sys.modules[PACKAGE]


@functools.cache
def detector_class(name: str) -> type:
    """River's drift detector ``name``: ``ADWIN``, ``PageHinkley`` or one of :data:`BINARY`."""
    with bare_package():
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
