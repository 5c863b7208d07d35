"""After PSI: the bank hands the centre the consent tokens of the intersection, sealed; the
centre judges them and both keep only the accepted rows.

The public surface of the package; roles live in :mod:`protocols.consent.bank` and
:mod:`protocols.consent.centre`, messages in :mod:`protocols.consent.messages`."""

from protocols.consent.bank import TokenSender
from protocols.consent.centre import Judge, TokenJudge
from protocols.consent.messages import PROTOCOL, ConsentProtocolError

__all__ = ["PROTOCOL", "ConsentProtocolError", "Judge", "TokenJudge", "TokenSender"]
