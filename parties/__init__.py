"""Flower apps per role: the coordinator's ServerApp and the data nodes' ClientApp.

This layer only turns protocol steps (:mod:`protocols`) into Flower Messages and back.
Layers, top to bottom (imports point down only; checked by import-linter):

* ``in_process`` (one scenario with the production apps, no Ray) and ``sweeps`` (several
  horizontal scenarios in one Flower run): drivers for tests, audits and research;
* ``server_app`` and ``client_app``: the only Flower entry points (``flwr run`` loads them);
* ``vertical`` (relayed two-party protocols and joint inference) and ``horizontal`` (FedAvg
  under SecAgg+/CKKS), independent of each other;
* ``common``: what both use (node runtime, relay, node introduction, recorders, the in-process grid).
"""
