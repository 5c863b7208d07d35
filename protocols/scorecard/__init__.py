"""Scorecards: federated binning -> WOE -> two-party LR -> points (see ``docs/scorecard.md``).

:mod:`points` holds the scaling maths (base score, PDO, odds), the per-party points tables, the
score-to-probability table and score bands with KS; :mod:`local` runs the whole chain in one
process over :func:`~protocols.common.party.run_local` (what tests and the reference use).
Each party keeps the points table of its own columns; a joint score is base points plus the
bank's points plus the centre's points, the centre's sum being one number per row, exactly the
exposure of joint LR inference (its partial linear score, rescaled).
"""
