"""The coordination store (etcd) seam: interface, etcd implementation, helpers."""

from ._abc import CoordStore, CoordUnavailable, WatchCompacted
from ._cluster_key import cluster_key_path, load_cluster_key
from ._election import Election, LeadershipLost, Term, leader_of
from ._etcd import EtcdStore
from ._etcd_access import check_etcd_access, etcd_store
from ._etcd_channel import channel_target
from ._etcd_tls import EtcdCredentials, EtcdTls
from ._etcd_wire import prefix_end
from ._jobs import read_job
from ._kv import Compare, Delete, Get, KeyValue, Put, Txn, TxnOp, TxnResult, WatchEvent
from ._lease import LeaseKeeper
from ._memory import MemoryCoordStore
from ._mirror import PrefixMirror
from ._wait import wait_deleted

__all__ = [
    "Compare",
    "CoordStore",
    "CoordUnavailable",
    "Delete",
    "Election",
    "EtcdCredentials",
    "EtcdStore",
    "EtcdTls",
    "Get",
    "KeyValue",
    "LeadershipLost",
    "LeaseKeeper",
    "MemoryCoordStore",
    "PrefixMirror",
    "Put",
    "Term",
    "Txn",
    "TxnOp",
    "TxnResult",
    "WatchCompacted",
    "WatchEvent",
    "channel_target",
    "check_etcd_access",
    "cluster_key_path",
    "etcd_store",
    "leader_of",
    "load_cluster_key",
    "prefix_end",
    "read_job",
    "wait_deleted",
]
