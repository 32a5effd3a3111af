"""What goes into the coordination store and comes out of it: key-values, watch
events, and the compares and operations of a transaction. Plain values, so the
interface (``_abc``), the etcd store and its in-memory twin share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

CompareOp = Literal["==", "!=", "<", ">"]
CompareTarget = Literal["value", "version", "create", "mod"]


class KeyValue(NamedTuple):
    """A key and its value at one revision. A named tuple: as immutable as a
    frozen dataclass and built in a third of the time (a worker builds one
    for every job it loads)."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["put", "delete"]
    kv: KeyValue  # for deletes: the key, an empty value and the deletion revision

    @property
    def key(self) -> str:
        return self.kv.key

    @property
    def value(self) -> bytes:
        return self.kv.value

    @property
    def mod_revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction on one key."""

    key: str
    target: CompareTarget
    op: CompareOp
    operand: bytes | int

    @classmethod
    def value(cls, key: str, op: CompareOp, operand: bytes) -> Compare:
        """Compares the stored bytes. etcd fails it when ``key`` does not exist."""
        return cls(key, "value", op, operand)

    @classmethod
    def create_revision(cls, key: str, op: CompareOp, operand: int) -> Compare:
        return cls(key, "create", op, operand)

    @classmethod
    def mod_revision(cls, key: str, op: CompareOp, operand: int) -> Compare:
        return cls(key, "mod", op, operand)

    @classmethod
    def absent(cls, key: str) -> Compare:
        """Version 0 means the key does not exist."""
        return cls(key, "version", "==", 0)

    def holds_for(self, kv: KeyValue | None) -> bool:
        """What etcd would decide for ``kv`` (None: absent); used by the twin."""
        if self.target == "value":
            if kv is None:
                return False
            left: bytes | int = kv.value
        elif kv is None:
            left = 0
        else:
            left = {"version": kv.version, "create": kv.create_revision,
                    "mod": kv.mod_revision}[self.target]
        right = self.operand
        if self.op == "==":
            return left == right
        if self.op == "!=":
            return left != right
        if self.op == "<":
            return left < right  # type: ignore[operator]
        return left > right  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Txn:
    """A transaction nested in a branch of another (etcd >= 3.3)."""

    compare: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...] = ()


TxnOp = Put | Delete | Get | Txn


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    # For each Get of the branch that ran, in order: the key-values it found.
    gets: list[list[KeyValue]] = field(default_factory=list)
    # For each nested Txn of the branch that ran, in order: its result.
    nested: list[TxnResult] = field(default_factory=list)
