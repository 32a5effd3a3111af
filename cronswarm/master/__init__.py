"""The master: stateless HTTP API and dashboard over etcd and MongoDB."""

from ._app import create_app
from ._auth import Principal, Role, TokenRecord, TokenStore
from ._jobs import JobService, StoredJob, parse_etag
from ._rotate import RotationReport, rotate_job_secrets

__all__ = [
    "JobService",
    "Principal",
    "Role",
    "RotationReport",
    "StoredJob",
    "TokenRecord",
    "TokenStore",
    "create_app",
    "parse_etag",
    "rotate_job_secrets",
]
