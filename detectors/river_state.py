"""JSON-safe state of River detectors, so a restarted worker continues exactly where it stopped.

Python detectors (DDM, HDDM_A, HDDM_W, PageHinkley) are their attribute dicts, nested River objects
(``stats.Mean``...) the same way. The Rust parts (ADWIN's ``AdaptiveWindowing``, ``RsEWMean``) export
their state as bytes through ``__getstate__``; those are stored base64-encoded with their constructor
arguments. Only classes from ``river`` modules are rebuilt.

>>> from river import drift
>>> a = drift.ADWIN()
>>> for x in [0, 1] * 50:
...     _ = a.update(x)
>>> b = loads(orjson.loads(orjson.dumps(dumps(a))))
>>> (b.width, b.estimation) == (a.width, a.estimation)
True
"""

from __future__ import annotations

import base64
import collections
import importlib
import math
import types
from typing import Any

import numpy as np
import orjson  # noqa: F401  (used in the doctest)

from detectors.bare_import import bare_package
from detectors.river_drift import PACKAGE


def dumps(obj: Any) -> Any:
    """A JSON-safe tree of ``obj`` (numbers, strings, lists, dicts)."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, (list, tuple)):
        return {"__tuple__": [dumps(v) for v in obj]} if isinstance(obj, tuple) else [dumps(v) for v in obj]
    if isinstance(obj, dict):
        return {"__dict__": [[dumps(k), dumps(v)] for k, v in obj.items()]}
    if isinstance(obj, collections.deque):
        return {"__deque__": [dumps(v) for v in obj], "maxlen": obj.maxlen}
    if isinstance(obj, types.MethodType):  # e.g. PageHinkley's chosen test: rebound to its owner on load
        return {"__method__": obj.__func__.__name__}
    cls = type(obj)
    name = f"{cls.__module__}:{cls.__qualname__}"
    if not cls.__module__.startswith("river"):
        raise TypeError(f"cannot serialise {name}: only River objects are supported")
    if hasattr(obj, "__dict__"):
        return {"__obj__": name, "attrs": {k: dumps(v) for k, v in vars(obj).items()}}
    state = obj.__getstate__()
    if isinstance(state, bytes) and hasattr(obj, "__getnewargs__"):
        return {
            "__rust__": name,
            "args": [dumps(v) for v in obj.__getnewargs__()],
            "state": base64.b64encode(state).decode(),
        }
    raise TypeError(f"cannot serialise {name}: no attribute dict and no byte state")


def _river(module: str) -> bool:
    return module == "river" or module.startswith("river.")


def _class(name: str) -> type:
    """The River class named ``module:qualname``; anything else (another package, a function, an object
    reached through a River module's imports) is refused: state comes from a Kafka topic."""
    module, _, qual = name.partition(":")
    if not _river(module) or not qual:
        raise ValueError(f"refusing to rebuild {name}: not a River class")
    with bare_package(PACKAGE):  # a detector's module without all of river.drift (see detectors.river_drift)
        obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part, None)
        if not isinstance(obj, type) or not _river(obj.__module__):
            raise ValueError(f"refusing to rebuild {name}: not a River class")
    return obj


def loads(tree: Any) -> Any:
    """Rebuild what :func:`dumps` produced."""
    if isinstance(tree, list):
        return [loads(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__float__" in tree:
        return float(tree["__float__"])
    if "__tuple__" in tree:
        return tuple(loads(v) for v in tree["__tuple__"])
    if "__deque__" in tree:
        return collections.deque((loads(v) for v in tree["__deque__"]), maxlen=tree["maxlen"])
    if "__dict__" in tree:
        return {loads(k): loads(v) for k, v in tree["__dict__"]}
    if "__obj__" in tree:
        cls = _class(tree["__obj__"])
        obj = cls.__new__(cls)
        for k, v in tree["attrs"].items():
            if isinstance(v, dict) and "__method__" in v:
                setattr(obj, k, getattr(obj, v["__method__"]))
            else:
                setattr(obj, k, loads(v))
        return obj
    if "__rust__" in tree:
        cls = _class(tree["__rust__"])
        obj = cls.__new__(cls, *[loads(v) for v in tree["args"]])
        obj.__setstate__(base64.b64decode(tree["state"]))
        return obj
    raise ValueError(f"unknown state node with keys {sorted(tree)}")
