"""The log store (MongoDB) seam: run records and the audit trail."""

from ._abc import AuditEntry, LogStore, LogStoreUnavailable, RunPage, RunQuery
from ._mongo import (
    MongoLogStore,
    decode_cursor,
    doc_to_record,
    encode_cursor,
    record_to_doc,
)

__all__ = [
    "AuditEntry",
    "LogStore",
    "LogStoreUnavailable",
    "MongoLogStore",
    "RunPage",
    "RunQuery",
    "decode_cursor",
    "doc_to_record",
    "encode_cursor",
    "record_to_doc",
]
