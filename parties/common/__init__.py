"""Wiring shared by every mode: who a node is (``roles``, ``node``), the relay of protocol
envelopes (``transport``, ``relay`` on the coordinator, ``handlers`` on the nodes), the node
introduction that starts every ledger-keeping run (``introduction``), where runs are recorded
(``recorder``) and the one in-process Flower grid (``grid``)."""
