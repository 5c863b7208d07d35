"""Vertical (two-party) runs: a bank and the credit centre over relayed protocols.

Coordinator: ``server`` (training: align, split, train, score, release) and
``inference_server`` (joint inference in batches). Nodes: ``client`` answers every phase
message with the phase's adapter; ``registry`` lists the adapters by name; ``phase`` says what
an adapter is and which node state phases share; the adapters by job: ``alignment_phases``
(PSI, split), ``training_phases`` (hetero-LR, SecureBoost, scoring, release),
``inference_phase``; ``consent`` is the bank's consent check.
"""
