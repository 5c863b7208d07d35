"""Flower apps per role: the coordinator's ServerApp and the data nodes' ClientApp.

This layer only turns protocol steps (:mod:`protocols`) into Flower Messages and back.
"""
