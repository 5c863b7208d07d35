"""How horizontal traffic rides on Flower messages (shared by the coordinator and the banks).

Set-up, key hand-over and release are Flower ``query`` messages whose content is one wire-encoded
dataclass of :mod:`fedcredit.horizontal.messages` (``RecordDict {MSG: ConfigRecord {"msg": bytes}}``).
Training rounds are Flower ``train`` messages (legacy FitIns/FitRes, :mod:`parties.horizontal.flower_legacy`)
whose config carries the ``CFG_*`` keys below.
"""

from __future__ import annotations

from typing import TypeVar

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.app.message_type import MessageType

from protocols.common import wire

T = TypeVar("T")

MSG = "fc"  # RecordDict key of query payloads; ConfigRecord {"msg": wire bytes}
# FitIns config keys the coordinator sets
CFG_SCENARIO, CFG_ROUND, CFG_TASK, CFG_FAULT = "fc.scenario", "fc.round", "fc.task", "fc.fault"
CFG_N_REF, CFG_LEN, CFG_KEY_FP = "fc.n_ref", "fc.ckks_len", "fc.ckks_key_fp"
CFG_MEAN, CFG_STD, CFG_STATS_CKKS, CFG_STATS_LEN = "fc.stats_mean", "fc.stats_std", "fc.stats_ckks", "fc.stats_len"
CFG_UPLOAD_SIG, CFG_UPLOAD_ROUND = "fc.upload_sig", "fc.upload_round"  # a bank's signed CKKS upload
CKKS_TENSOR_TYPE = "ckks"  # Parameters.tensor_type of CKKS ciphertexts


def _content(payload: object) -> RecordDict:
    return RecordDict({MSG: ConfigRecord({"msg": wire.encode(payload)})})


def query_message(node_id: int, action: str, payload: object) -> Message:
    """The coordinator's ``query.<action>`` to one node."""
    return Message(
        _content(payload), dst_node_id=node_id, message_type=f"{MessageType.QUERY}.{action}", group_id=action
    )


def reply_message(request: Message, payload: object) -> Message:
    """A node's answer to ``request``."""
    return Message(_content(payload), reply_to=request)


def read_payload(message: Message, cls: type[T]) -> T:
    """The dataclass a query or its reply carries (refused unless it is exactly ``cls``)."""
    raw = message.content.config_records[MSG]["msg"]
    if not isinstance(raw, bytes):
        raise wire.WireError(f"query field 'msg' is {type(raw).__name__}, not bytes")
    return wire.decode(raw, cls)
