"""Horizontal runs: banks train one model with FedAvg/FedProx under plain, SecAgg+ or CKKS aggregation.

Coordinator: ``server`` (the run), ``strategy`` (the Flower strategy), ``ckks_round`` (a round
over ciphertexts), ``evaluation`` (metrics, baseline, saved model), ``run_state`` (what these
share), ``audit`` (the recording grid behind the ledger). Banks: ``client`` (handlers),
``bank_round`` (local training and update protection), ``bank_node`` (node state and keys).
Both: ``transport`` (message contents) and ``flower_legacy``, the only module that touches
Flower's legacy round API (LegacyContext, DefaultWorkflow, SecAgg+).
"""
