"""Per-process memo of what a hetero-LR party derives from its data (checked, encoded, digested).

Why: a node rebuilds its party from state bytes at every relay step (``from_state``), and the
constructor checks every row, encodes the features in fixed point and digests the data so that
``_restore`` can refuse a state handed back with other data. That is O(rows) per step, i.e.
O(rows x batches) per epoch: at 1M rows it costs more than the step's own work. A long-lived
node process hands the same data back every step, so the derived arrays and the digest can be
kept.

Safety: only arrays made by :func:`frozen` are memoised. :func:`frozen` returns a read-only
*copy* that this module registers (weakly, by identity): nothing else holds a writeable view
of its memory, so its bytes cannot change after it was checked and digested (short of
deliberately flipping the flag back, which :meth:`FrozenMemo.get` also refuses). An entry is
used only when every input ``is`` the very object the entry was built from (the entry keeps
them alive, so their ids cannot be reused). Any other array — other data, a copy of the same
data, a writeable array — is checked, encoded and digested afresh, exactly as without the memo,
so a state restored on different data is refused as before. Derived arrays the memo hands out
are read-only too.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")

_FROZEN: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()


def frozen(a: np.ndarray) -> np.ndarray:
    """A read-only, contiguous copy of ``a`` that parties may memoise derived values for.

    Call it once when a node loads its data and hand the result to the party on every step.
    An array that is already frozen is returned as is (no second copy).
    """
    if is_frozen(a):
        return a
    out = np.array(a, copy=True, order="C")
    return _freeze(out)


def _freeze(a: np.ndarray) -> np.ndarray:
    """Mark an array this process just made (no other view of it exists) read-only and memoisable."""
    a.flags.writeable = False
    _FROZEN[id(a)] = a
    return a


def is_frozen(a: Any) -> bool:
    """True for ``None`` and for arrays made by :func:`frozen` (or by a memo) that are still read-only."""
    if a is None:
        return True
    return isinstance(a, np.ndarray) and _FROZEN.get(id(a)) is a and not a.flags.writeable


class FrozenMemo(Generic[T]):
    """A small LRU of values derived from frozen input arrays, keyed by their identity and a tag.

    ``tag`` holds everything else the value depends on (role, encoding formats, settings).
    """

    def __init__(self, maxsize: int = 2) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, tuple[tuple[Any, ...], T]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, tag: Hashable, inputs: tuple[Any, ...], build: Callable[[], T]) -> T:
        """The memoised ``build()`` for ``(tag, inputs)``; ``build()`` afresh unless every input is frozen."""
        if not all(is_frozen(a) for a in inputs):
            return build()
        key = (tag, tuple(id(a) for a in inputs))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and all(x is y for x, y in zip(entry[0], inputs, strict=True)):
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
        value = build()  # may raise: nothing is stored for inputs that fail their checks
        with self._lock:
            self.misses += 1
            self._entries[key] = (inputs, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def freeze_derived(a: np.ndarray | None) -> np.ndarray | None:
    """Make an array a memo built (and is about to share between parties) read-only and memoisable."""
    if a is None:
        return None
    if _FROZEN.get(id(a)) is a:
        return a
    if a.base is not None or not a.flags.owndata:
        a = np.array(a, copy=True, order="C")  # a view: the memory may be reachable writeably elsewhere
    return _freeze(a)
