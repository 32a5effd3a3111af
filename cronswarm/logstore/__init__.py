"""The log store (MongoDB) seam: run records and the audit trail."""

from ._abc import (
    AuditEntry,
    LogStore,
    LogStoreRejected,
    LogStoreUnavailable,
    RunPage,
    RunQuery,
)
from ._history import decode_cursor, encode_cursor
from ._memory import MemoryLogStore
from ._mongo import MongoLogStore
from ._run_docs import coalesce_records, doc_to_record, record_to_doc

__all__ = [
    "AuditEntry",
    "LogStore",
    "LogStoreRejected",
    "LogStoreUnavailable",
    "MemoryLogStore",
    "MongoLogStore",
    "RunPage",
    "RunQuery",
    "coalesce_records",
    "decode_cursor",
    "doc_to_record",
    "encode_cursor",
    "record_to_doc",
]
