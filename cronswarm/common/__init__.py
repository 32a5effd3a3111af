"""Pure building blocks shared by masters and workers."""

from ._alerting import ALERT_KINDS, DEFAULT_ALERT_RULE, PROBLEM_KINDS, AlertKind, AlertRule
from ._cancel import reraise_cancellation
from ._clock import Clock, SkewedClock, SystemClock, loop_deadline
from ._config import MAX_OUTPUT_PART_BYTES, Settings
from ._cron import CronSchedule, from_ms, load_timezone, preview, to_ms, validate_expression
from ._describe import describe
from ._errors import (
    AuthError,
    ConfigError,
    ConflictError,
    CronswarmError,
    FieldProblem,
    NotFoundError,
    PermissionDenied,
    PreconditionFailed,
    ServiceStartError,
    ServiceUnavailable,
    ValidationError,
)
from ._fields import FieldReader
from ._job import (
    MISFIRE_POLICIES,
    OVERLAP_POLICIES,
    HttpRequest,
    Job,
    RetryPolicy,
    check_name,
    validate_name,
)
from ._keys import Keyspace, decode_tick, encode_tick, parse_run_id, run_id
from ._run import RunRecord, RunStatus, Trigger
from ._signing import LIVE_AUTH_SCHEME, check_live_auth, live_auth_header, live_signature
from ._sse import (
    SSE_HEADERS,
    end_event,
    output_event,
    sse_comment,
    sse_event,
)

__all__ = [
    "ALERT_KINDS",
    "DEFAULT_ALERT_RULE",
    "LIVE_AUTH_SCHEME",
    "MAX_OUTPUT_PART_BYTES",
    "MISFIRE_POLICIES",
    "OVERLAP_POLICIES",
    "PROBLEM_KINDS",
    "SSE_HEADERS",
    "AlertKind",
    "AlertRule",
    "AuthError",
    "Clock",
    "ConfigError",
    "ConflictError",
    "CronSchedule",
    "CronswarmError",
    "FieldProblem",
    "FieldReader",
    "HttpRequest",
    "Job",
    "Keyspace",
    "NotFoundError",
    "PermissionDenied",
    "PreconditionFailed",
    "RetryPolicy",
    "RunRecord",
    "RunStatus",
    "ServiceStartError",
    "ServiceUnavailable",
    "Settings",
    "SkewedClock",
    "SystemClock",
    "Trigger",
    "ValidationError",
    "check_live_auth",
    "check_name",
    "decode_tick",
    "describe",
    "encode_tick",
    "end_event",
    "from_ms",
    "live_auth_header",
    "live_signature",
    "load_timezone",
    "loop_deadline",
    "output_event",
    "parse_run_id",
    "preview",
    "reraise_cancellation",
    "run_id",
    "sse_comment",
    "sse_event",
    "to_ms",
    "validate_expression",
    "validate_name",
]
