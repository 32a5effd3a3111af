"""Our coordination types as etcd's protobuf messages, and back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aetcd import rpc

from ._kv import Compare, Delete, Get, KeyValue, Put, Txn, TxnOp, TxnResult, WatchEvent

_TARGETS = {
    "value": rpc.Compare.VALUE,
    "version": rpc.Compare.VERSION,
    "create": rpc.Compare.CREATE,
    "mod": rpc.Compare.MOD,
}
_RESULTS = {
    "==": rpc.Compare.EQUAL,
    "!=": rpc.Compare.NOT_EQUAL,
    "<": rpc.Compare.LESS,
    ">": rpc.Compare.GREATER,
}


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with ``prefix``."""
    buf = bytearray(prefix)
    for i in reversed(range(len(buf))):
        if buf[i] < 0xFF:
            buf[i] += 1
            return bytes(buf[: i + 1])
    return b"\x00"


def kv_of(raw: Any) -> KeyValue:
    return KeyValue(
        key=raw.key.decode(),
        value=bytes(raw.value),
        create_revision=raw.create_revision,
        mod_revision=raw.mod_revision,
        version=raw.version,
        lease=raw.lease,
    )


def compare_msg(c: Compare) -> Any:
    msg = rpc.Compare(key=c.key.encode(), target=_TARGETS[c.target], result=_RESULTS[c.op])
    if c.target == "value":
        if not isinstance(c.operand, bytes):
            raise TypeError("value compares take bytes")
        msg.value = c.operand
    elif c.target == "version":
        msg.version = int(c.operand)
    elif c.target == "create":
        msg.create_revision = int(c.operand)
    else:
        msg.mod_revision = int(c.operand)
    return msg


def txn_result(resp: Any, revision: int) -> TxnResult:
    gets: list[list[KeyValue]] = []
    nested: list[TxnResult] = []
    for r in resp.responses:
        kind = r.WhichOneof("response")
        if kind == "response_range":
            gets.append([kv_of(kv) for kv in r.response_range.kvs])
        elif kind == "response_txn":
            nested.append(txn_result(r.response_txn, revision))
    return TxnResult(bool(resp.succeeded), revision, gets, nested)


def request_ops(ops: Iterable[TxnOp]) -> list[Any]:
    out = []
    for op in ops:
        if isinstance(op, Txn):
            out.append(rpc.RequestOp(request_txn=rpc.TxnRequest(
                compare=[compare_msg(c) for c in op.compare],
                success=request_ops(op.success),
                failure=request_ops(op.failure),
            )))
            continue
        raw = op.key.encode()
        if isinstance(op, Put):
            out.append(rpc.RequestOp(request_put=rpc.PutRequest(key=raw, value=op.value,
                                                                lease=op.lease)))
        elif isinstance(op, Delete):
            req = rpc.DeleteRangeRequest(key=raw)
            if op.prefix:
                req.range_end = prefix_end(raw)
            out.append(rpc.RequestOp(request_delete_range=req))
        elif isinstance(op, Get):
            req = rpc.RangeRequest(key=raw)
            if op.prefix:
                req.range_end = prefix_end(raw)
            out.append(rpc.RequestOp(request_range=req))
        else:  # pragma: no cover - the type union is closed
            raise TypeError(f"unknown txn op {op!r}")
    return out


def watch_event(raw: Any) -> WatchEvent:
    return WatchEvent("delete" if raw.type == rpc.Event.DELETE else "put", kv_of(raw.kv))
