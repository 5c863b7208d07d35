"""Horizontal (homogeneous) joint modelling: banks with one feature schema train one model.

Flower-independent building blocks live here -- settings, data access, local training,
aggregation and update validation, CKKS (TenSEAL) with the X25519 key hand-over, and DP
accounting. ``parties/horizontal/server.py`` and ``parties/horizontal/client.py`` wire them into
Flower (FedAvg/FedProx rounds, SecAgg+, the CKKS workflow).
"""
