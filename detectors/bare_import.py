"""A package's submodules without the package's ``__init__`` (:func:`bare_package`), where the ``__init__``
imports much that the detectors never use: River's drift detectors without River's datasets (scikit-learn,
SQLAlchemy: ~1.5 s), SciPy's special-function ufuncs without ``scipy.special``'s array-API layer (~0.17 s).

While :func:`bare_package` is entered, the package (if not imported yet) is a bare module with the package's
path, ``__init__`` not run, so a submodule imports alone, under its real name: its objects are the package's
own, and a later ``import`` of the package runs the ``__init__`` as usual and finds the submodule loaded.

>>> import sys
>>> with bare_package("river.drift"):
...     from river.drift.adwin import ADWIN
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


@functools.cache
def _spec(name: str) -> importlib.machinery.ModuleSpec:
    spec = importlib.util.find_spec(name)  # imports the parent package, not this one
    assert spec is not None and spec.submodule_search_locations is not None, f"{name} is a package"
    return spec


@contextlib.contextmanager
def bare_package(name: str) -> Iterator[None]:
    """Inside: the submodules of package ``name`` (dotted, e.g. ``"scipy.special"``) import without its
    ``__init__`` (unless it ran already)."""
    if name in sys.modules:
        yield
        return
    bare = importlib.util.module_from_spec(_spec(name))
    sys.modules[name] = bare
    try:
        yield
    finally:
        if sys.modules.get(name) is bare:
            del sys.modules[name]
