"""Plaintext gradient-boosted trees: the reference SecureBoost must reproduce, and its pieces.

``params.py`` declares the tree hyper-parameters once (:class:`GBDTParams`), ``binning.py`` the
quantile bins each party fits on its own columns, ``plain.py`` the split search, the trees and
the centralised reference :class:`PlainGBDT`; :mod:`protocols.secureboost` calls the same
functions so that equal integers give equal splits.
"""

from protocols.gbdt.binning import BinEdges, BinningError, fit_bins
from protocols.gbdt.params import GBDTParams
from protocols.gbdt.plain import PlainGBDT, Tree

__all__ = ["BinEdges", "BinningError", "GBDTParams", "PlainGBDT", "Tree", "fit_bins"]
