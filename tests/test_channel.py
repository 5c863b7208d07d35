"""The one sealed-channel recipe: round trip, every bound field, wrong keys, low-order points, reuse."""

from __future__ import annotations

import pytest

from protocols.common.channel import (
    TAG_BYTES,
    BadPublicKey,
    Channel,
    ChannelError,
    SealBroken,
    new_private_key,
    public_key_of,
)

# Low-order points of Curve25519 (u-coordinates): X25519 with any key gives all zero.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def pair(**over: str) -> tuple[Channel, Channel]:
    """Alice's and Bob's ends of one channel; ``over`` changes Bob's view of the context."""
    a_key, b_key = new_private_key(), new_private_key()
    ctx = {"protocol": "test/1", "session": "run-1"}
    alice = Channel(a_key, public_key_of(b_key), **ctx, me="alice", peer="bob")
    bob_ctx = {**ctx, "me": "bob", "peer": "alice", **over}
    bob = Channel(b_key, public_key_of(a_key), **bob_ctx)
    return alice, bob


def test_round_trip_both_directions_and_size():
    alice, bob = pair()
    sealed = alice.seal(b"secret keys", message="M", batch=3)
    assert len(sealed) == len(b"secret keys") + TAG_BYTES and b"secret" not in sealed
    assert bob.open(sealed, message="M", batch=3) == b"secret keys"
    assert alice.open(bob.seal(b"answer", message="R", batch=3), message="R", batch=3) == b"answer"
    assert bob.open(alice.seal(b"", message="empty"), message="empty") == b""


@pytest.mark.parametrize("field", ["protocol", "session", "me", "peer"])
def test_each_bound_party_field_changed_does_not_open(field):
    alice, bob = pair(**{field: "other"})
    with pytest.raises(SealBroken, match="does not open"):
        bob.open(alice.seal(b"x", message="M"), message="M")


@pytest.mark.parametrize(
    "fields",
    [{"message": "N", "batch": 3}, {"message": "M", "batch": 4}, {"message": "M"}, {"message": "M", "batch": "3"}],
)
def test_each_message_field_changed_does_not_open(fields):
    alice, bob = pair()
    sealed = alice.seal(b"x", message="M", batch=3)
    with pytest.raises(SealBroken):
        bob.open(sealed, **fields)
    assert bob.open(sealed, message="M", batch=3) == b"x"  # the right fields still open it


def test_reflected_tampered_or_wrongly_keyed_messages_do_not_open():
    alice, bob = pair()
    sealed = alice.seal(b"payload", message="M")
    with pytest.raises(SealBroken):
        alice.open(sealed, message="M")  # reflected back to its sender
    for i in (0, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 1
        with pytest.raises(SealBroken):
            bob.open(bytes(bad), message="M")
    with pytest.raises(SealBroken):
        bob.open(sealed[:-1], message="M")
    with pytest.raises(SealBroken):
        bob.open("not bytes", message="M")
    eve_key = new_private_key()  # the right names and context, the wrong private key
    eve = Channel(eve_key, alice.public_key, protocol="test/1", session="run-1", me="bob", peer="alice")
    with pytest.raises(SealBroken):
        eve.open(sealed, message="M")
    substituted = Channel(  # alice's key pair, but bob's public key replaced by eve's
        new_private_key(), public_key_of(eve_key), protocol="test/1", session="run-1", me="alice", peer="bob"
    )
    with pytest.raises(SealBroken):
        bob.open(substituted.seal(b"payload", message="M"), message="M")


@pytest.mark.parametrize("point", LOW_ORDER)
def test_low_order_points_are_refused(point):
    with pytest.raises(BadPublicKey, match="low-order"):
        Channel(new_private_key(), point, protocol="p", session="s", me="a", peer="b")


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33), "x" * 32, None])
def test_malformed_public_and_private_keys_are_refused(key):
    with pytest.raises(BadPublicKey, match="expected 32"):
        Channel(new_private_key(), key, protocol="p", session="s", me="a", peer="b")
    with pytest.raises(ChannelError, match="private key"):
        Channel(key, public_key_of(new_private_key()), protocol="p", session="s", me="a", peer="b")


def test_a_context_is_sealed_at_most_once_and_fields_are_typed():
    alice, bob = pair()
    alice.seal(b"one", message="M", batch=1)
    with pytest.raises(ChannelError, match="already sealed"):
        alice.seal(b"two", message="M", batch=1)
    second = alice.seal(b"two", message="M", batch=2)  # another message: another key
    assert bob.open(second, message="M", batch=2) == b"two"
    with pytest.raises(ChannelError, match="not bool"):
        alice.seal(b"x", message="M", flag=True)
    with pytest.raises(ChannelError, match="not float"):
        alice.seal(b"x", message="M", value=1.5)
