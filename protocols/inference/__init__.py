"""Joint inference: the bank scores applicants with the centre's sealed partial scores, consent-gated.

The public surface of the package; roles and helpers live in its modules."""

from protocols.inference.protocol import (
    ACCEPTED_PURPOSES,
    MODEL_TYPES,
    PROTOCOL,
    REFUSED_PREFIX,
    SCORED,
    UNKNOWN,
    USCC_LEN,
    BankModelPart,
    CentreModelPart,
    InferenceBank,
    InferenceCentre,
    InferenceError,
    InferenceKey,
    InferencePartials,
    InferenceRequest,
    PartialsBody,
    RequestBody,
    pack_usccs,
    sigmoid,
    unpack_usccs,
)

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
