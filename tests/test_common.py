"""The shared contracts every protocol package is built on: the settings mechanism and the
restartable-party contract (one parser, one restore sequence), tested on toy classes so a
regression shows here before it shows as a confusing failure inside a protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest

from protocols.common import wire
from protocols.common.party import Envelope, ProtocolError, RestartableParty, data_digest, run_local
from protocols.common.settings import ConfigError, Settings, describe, setting

# -- settings -------------------------------------------------------------------------------------


class ToyError(ConfigError):
    """A section's own error type (as hetero-LR and SecureBoost have)."""


@dataclass
class Inner(Settings):
    SECTION = "toy.inner"
    k: int = setting(3, "an inner count", ge=1)


@dataclass
class Fault(Settings):
    SECTION = "toy.faults"
    party: str = setting("", "who fails")
    round: int = setting(1, "when", ge=1)


@dataclass
class Toy(Settings):
    SECTION = "toy"
    error_type: ClassVar[type[ConfigError]] = ToyError

    count: int = setting(2, "how many", ge=1, le=10)
    rate: float = setting(0.5, "a rate", ge=0, lt=1)
    mode: str = setting("a", "which mode", choices=("a", "b"))
    weight: str | None = setting(
        None, "class weights", choices=(None, "balanced"), convert=lambda v: None if v == "none" else v
    )
    primes: tuple[int, ...] = setting((60, 40), "bit sizes", ge=20)
    modulus: int = setting(2**32, "a modulus", power_of_two=True, le=2**32)
    small: bool = setting(False, "allow small values")
    inner: Inner = setting(Inner, "a nested table")
    faults: tuple[Fault, ...] = setting((), "an array of tables")

    def validate(self) -> None:
        if self.count > 5 and not self.small:
            raise self.fail("count", "must be <= 5 unless small = true")


def test_settings_parse_convert_and_nest():
    t = Toy.from_section(
        {"count": 3, "rate": 0, "weight": "none", "primes": [50], "inner": {"k": 2}, "faults": [{"party": "x"}]}
    )
    assert (t.count, t.rate, t.weight, t.primes, t.inner.k) == (3, 0.0, None, (50,), 2)
    assert isinstance(t.rate, float) and t.faults == (Fault(party="x", round=1),)
    assert Toy().inner is not Toy().inner  # nested defaults are fresh per instance


@pytest.mark.parametrize(
    "table, needle",
    [
        ({"cuont": 1}, "[toy] unknown key(s) ['cuont']"),
        ({"count": True}, "[toy] count = True: must be an integer"),
        ({"count": 1.5}, "[toy] count = 1.5: must be an integer"),
        ({"count": 0}, "[toy] count = 0: must be >= 1"),
        ({"count": 11}, "[toy] count = 11: must be <= 10"),
        ({"rate": float("nan")}, "[toy] rate = nan: must be a finite number"),
        ({"rate": 1}, "[toy] rate = 1.0: must be < 1"),
        ({"mode": "c"}, "[toy] mode = 'c': must be one of 'a', 'b'"),
        ({"weight": "heavy"}, "[toy] weight = 'heavy': must be one of None, 'balanced'"),
        ({"primes": [60, 10]}, "[toy] primes = (60, 10): every element must be >= 20"),
        ({"primes": 60}, "[toy] primes = 60: must be a list of integer"),
        ({"modulus": 3}, "[toy] modulus = 3: must be a power of two"),
        ({"small": 1}, "[toy] small = 1: must be true or false"),
        ({"inner": {"k": 0}}, "[toy.inner] k = 0: must be >= 1"),
        ({"inner": 3}, "[toy] inner must be a table"),
        ({"faults": [{"round": 0}]}, "[toy.faults] round = 0: must be >= 1"),
        ({"faults": {"round": 1}}, "[toy] faults must be an array of tables"),
        ({"count": 6}, "[toy] count = 6: must be <= 5 unless small = true"),
    ],
)
def test_settings_errors_name_section_key_and_rule(table, needle):
    with pytest.raises(ConfigError) as err:
        Toy.from_section(table)
    assert needle in str(err.value)


def test_settings_raise_the_sections_own_error_type_also_when_built_directly():
    with pytest.raises(ToyError, match=r"\[toy\] count = 0"):
        Toy(count=0)
    assert Toy(count=6, small=True).count == 6


def test_describe_documents_every_setting_with_readable_bounds():
    rows = {r.key: r for r in describe(Toy)}
    assert set(rows) == {"count", "rate", "mode", "weight", "primes", "modulus", "small", "inner.k", "faults"}
    assert rows["count"].rule == ">= 1, <= 10" and rows["count"].doc == "how many"
    assert rows["modulus"].rule == "<= 4294967296, power of two"  # not 4.29497e+09
    assert rows["rate"].type == "number" and rows["small"].type == "true/false"
    effective = {r.key: r.default for r in describe(Toy, Toy(count=4))}
    assert effective["count"] == 4 and effective["inner.k"] == 3


# -- restartable parties --------------------------------------------------------------------------


@dataclass
class CounterState:
    version: str
    role: str
    name: str
    peer: str
    data_digest: str
    count: int
    history: list = field(default_factory=list)


class Counter(RestartableParty):
    """Sends its peer a number until it has counted to three; the sum of its data is its model."""

    role = "counter"
    state_type = CounterState
    state_version = "counter/1"
    restored = 0

    def __init__(self, name: str, peer: str, X: np.ndarray) -> None:
        self.name, self.X = name, X
        self.s = CounterState(self.state_version, self.role, name, peer, data_digest(X), 0)

    @classmethod
    def from_state(cls, state: bytes, X: np.ndarray) -> Counter:  # type: ignore[override]  # the role's own data arguments
        s = cls.peek_state(state)
        party = cls(s.name, s.peer, X)
        party._restore(s)
        return party

    def _after_restore(self) -> None:
        Counter.restored += 1

    def start(self) -> list[Envelope]:
        return [self.send(self.s.peer, Tick(0))] if self.name == "a" else []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        tick = wire.decode(inbox[0].payload, Tick)
        self.s.count += 1
        self.s.history.append({"tick": tick.n})
        return [] if tick.n >= 3 else [self.send(self.s.peer, Tick(tick.n + 1))]

    @property
    def finished(self) -> bool:
        return self.s.count >= 1

    @property
    def model(self) -> float:
        return float(self.X.sum())


@dataclass
class Tick:
    n: int


def test_parties_survive_a_restart_before_every_step():
    X = {"a": np.ones((2, 2)), "b": np.arange(4.0).reshape(2, 2)}
    parties = {"a": Counter("a", "b", X["a"]), "b": Counter("b", "a", X["b"])}
    Counter.restored = 0
    run_local(parties, restart=lambda name, p: Counter.from_state(p.to_state(), X[name]))
    assert Counter.restored == 4  # every step rebuilt the receiving party through the hook
    assert [h["tick"] for h in parties["b"].history] == [0, 2] and parties["b"].model == 6.0


def test_restore_refuses_other_data_roles_versions_and_garbage():
    X = np.ones((2, 2))
    state = Counter("a", "b", X).to_state()
    with pytest.raises(ProtocolError, match="digest mismatch"):
        Counter.from_state(state, X + 1)
    other = CounterState("counter/0", "counter", "a", "b", data_digest(X), 0)
    with pytest.raises(ProtocolError, match=r"not a counter party \(counter/1\)"):
        Counter.from_state(wire.encode(other), X)
    with pytest.raises(ProtocolError, match="state cannot be restored"):
        Counter.from_state(b"not a state", X)
    party = Counter("a", "b", X)
    party._restore(Counter.peek_state(state))
    assert party.s.name == "a"


def test_the_contracts_defaults_history_model_and_fail():
    class Bare(Counter):
        @property
        def model(self) -> float:
            return RestartableParty.model.fget(self)  # type: ignore[attr-defined]  # the base's default

    bare = Bare("a", "b", np.ones((1, 1)))
    assert bare.history == []
    with pytest.raises(ProtocolError, match="produces no model"):
        _ = bare.model
    assert str(bare._fail("stuck")) == "counter 'a': stuck"
