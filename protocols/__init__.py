"""Pure cryptographic building blocks and protocol state machines.

Nothing here imports Flower: every protocol is a set of party objects exchanging plain dataclass
messages, testable end to end in one process and driven over Flower by :mod:`parties`.
"""
