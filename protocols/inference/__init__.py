"""Joint inference: the bank scores applicants with the centre's sealed partial scores, consent-gated.

After training, each party holds only its own model part. To score an applicant the bank needs
the centre's contribution for that enterprise, which the centre finds by USCC; one batch of
applicants is one sealed exchange (``docs/protocols/inference.md``). The package's modules:
``messages`` (what crosses the relay), ``bodies`` (the sealed bodies inside), ``model`` (the
two model parts), ``_base`` (state, checks and sealing both roles share), ``bank`` and
``centre`` (one role each).
"""

from protocols.inference.bank import REFUSED_PREFIX, SCORED, UNKNOWN, InferenceBank
from protocols.inference.bodies import USCC_LEN, PartialsBody, RequestBody, pack_usccs, unpack_usccs
from protocols.inference.centre import ACCEPTED_PURPOSES, InferenceCentre
from protocols.inference.messages import PROTOCOL, InferenceError, InferenceKey, InferencePartials, InferenceRequest
from protocols.inference.model import MODEL_TYPES, BankModelPart, CentreModelPart, sigmoid

__all__ = [
    "ACCEPTED_PURPOSES",
    "BankModelPart",
    "CentreModelPart",
    "InferenceBank",
    "InferenceCentre",
    "InferenceError",
    "InferenceKey",
    "InferencePartials",
    "InferenceRequest",
    "MODEL_TYPES",
    "PROTOCOL",
    "PartialsBody",
    "REFUSED_PREFIX",
    "RequestBody",
    "SCORED",
    "UNKNOWN",
    "USCC_LEN",
    "pack_usccs",
    "sigmoid",
    "unpack_usccs",
]
