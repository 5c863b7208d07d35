"""Real deployment: key material (:mod:`fedcredit.deploy.keys`) and running a federation of
separate SuperLink / SuperNode processes over TLS with SuperNode authentication
(:mod:`fedcredit.deploy.local`). Flower is imported only when a deployment starts.
"""
