"""fedcredit: privacy-preserving joint credit-risk modelling between a public credit centre and banks.

Layers (imports point down only): ``simulations`` -> ``parties`` (Flower apps) -> ``fedcredit``
(data, models, metrics, ledger, consent, config, cli) -> ``protocols`` (pure crypto, no Flower).
"""

__version__ = "0.1.0"
