"""Alerts: channels (email, webhook, Slack, Feishu), the engine's decisions, delivery.

The elected master runs ``AlertMonitor`` (see ``master._leader``); channels are
managed through the API (``master._api_alerts``).
"""

from ._channels import CHANNEL_TYPES, EMAIL_SECURITY, SECRETS, Channel, url_target
from ._delivery import AlertStats, Dispatcher, resolve_channels
from ._engine import JobAlertState, Notice, check_dead_man, on_problem, on_success
from ._messages import (
    email_message,
    feishu_body,
    feishu_card,
    feishu_sign,
    slack_body,
    webhook_body,
    webhook_signature,
)
from ._monitor import AlertMonitor, ChannelBook, MonitorConfig, Watched
from ._registry import ChannelRegistry
from ._senders import DeliveryError, Sender
from ._store import DELIVERY_STATUSES, AlertStore, delivery_view

__all__ = [
    "CHANNEL_TYPES",
    "DELIVERY_STATUSES",
    "EMAIL_SECURITY",
    "SECRETS",
    "AlertMonitor",
    "AlertStats",
    "AlertStore",
    "Channel",
    "ChannelBook",
    "ChannelRegistry",
    "DeliveryError",
    "Dispatcher",
    "JobAlertState",
    "MonitorConfig",
    "Notice",
    "Sender",
    "Watched",
    "check_dead_man",
    "delivery_view",
    "email_message",
    "feishu_body",
    "feishu_card",
    "feishu_sign",
    "on_problem",
    "on_success",
    "resolve_channels",
    "slack_body",
    "url_target",
    "webhook_body",
    "webhook_signature",
]
