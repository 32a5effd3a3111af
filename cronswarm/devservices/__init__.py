"""Local etcd and MongoDB-protocol servers for development and tests."""

from ._process import (
    EtcdCluster,
    EtcdServer,
    EtcdServerTls,
    MongoServer,
    ServerProcess,
    dying_with_parent,
    find_executable,
    free_port,
)

__all__ = [
    "EtcdCluster",
    "EtcdServer",
    "EtcdServerTls",
    "MongoServer",
    "ServerProcess",
    "dying_with_parent",
    "find_executable",
    "free_port",
]
