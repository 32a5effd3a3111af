"""The coordination store (etcd) seam: interface, etcd implementation, helpers."""

from ._abc import (
    Compare,
    CoordStore,
    CoordUnavailable,
    Delete,
    Get,
    KeyValue,
    Put,
    Txn,
    TxnOp,
    TxnResult,
    WatchCompacted,
    WatchEvent,
)
from ._cluster_key import cluster_key_path, load_cluster_key
from ._election import Election, LeadershipLost, Term, leader_of
from ._etcd import EtcdStore, channel_target, prefix_end
from ._lease import LeaseKeeper
from ._mirror import PrefixMirror
from ._wait import wait_deleted

__all__ = [
    "Compare",
    "CoordStore",
    "CoordUnavailable",
    "Delete",
    "Election",
    "EtcdStore",
    "Get",
    "KeyValue",
    "LeadershipLost",
    "LeaseKeeper",
    "PrefixMirror",
    "Put",
    "Term",
    "Txn",
    "TxnOp",
    "TxnResult",
    "WatchCompacted",
    "WatchEvent",
    "channel_target",
    "cluster_key_path",
    "leader_of",
    "load_cluster_key",
    "prefix_end",
    "wait_deleted",
]
