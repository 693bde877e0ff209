"""The special functions of the detectors' statistics and thresholds: SciPy's ufuncs, imported without
``scipy.special``'s ``__init__`` (:mod:`detectors.bare_import`; ~0.17 s of every replay's start-up). They are the
very objects ``scipy.special`` exports (and ``scipy.stats.binom`` runs for its ``isf`` and ``ppf``).

>>> round(float(ndtri(0.975)), 4), float(binom_isf(0.5, 10, 0.5))
(1.96, 5.0)
>>> import scipy.special
>>> scipy.special.kolmogorov is kolmogorov
True
"""

from __future__ import annotations

from typing import Any

from detectors.bare_import import bare_package

__all__ = ["binom_isf", "binom_ppf", "chdtrc", "chdtri", "kolmogorov", "ndtri"]

binom_isf: Any
binom_ppf: Any
try:
    with bare_package("scipy.special"):
        from scipy.special._ufuncs import _binom_isf as binom_isf
        from scipy.special._ufuncs import _binom_ppf as binom_ppf
        from scipy.special._ufuncs import chdtrc, chdtri, kolmogorov, ndtri
except ImportError:  # a SciPy that moved them: the public paths (tests/test_detect_units.py compares both)
    from scipy.special import chdtrc, chdtri, kolmogorov, ndtri
    from scipy.stats import binom

    binom_isf, binom_ppf = binom.isf, binom.ppf
