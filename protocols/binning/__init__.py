"""Federated binning with weight of evidence (WOE) and information value (IV).

The credit modeller's first step: every column is cut into bins, each bin gets a WOE
(``ln(share of non-events / share of events)``), each column an IV, and columns are kept by IV.
For the bank's own columns this is local. For the credit centre's columns the labels are at the
bank and the values at the centre; the protocol (``docs/protocols/binning.md``):

1. the bank encrypts its 0/1 labels (aligned rows, Paillier, its own key) -> :class:`EncryptedLabels`;
2. the centre fine-bins each of its columns locally (quantiles; categorical levels and
   missing values get their own bins; bins smaller than a minimum row count are pooled before
   anything is released), sums the encrypted labels per fine bin and sends the re-randomised
   sums with the per-bin row counts -> :class:`EncryptedBinSums` (no edges, no levels, no row's bin);
3. the bank decrypts event counts per fine bin, merges bins (monotonic where asked, minimum bin
   share), computes WOE and IV, selects columns by IV and sends the centre, for its own columns
   only, which are kept and the WOE of each merged bin -> :class:`BinningResult`.

Modules: :mod:`fine` (local fine binning, both roles), :mod:`woe` (WOE/IV maths, merging and
selection, both roles), :mod:`messages`, :mod:`bank` and :mod:`centre` (the two roles).
"""
