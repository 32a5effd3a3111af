"""Alert channels in etcd: ``/alerts/channels/<name>``, one JSON document each."""

from __future__ import annotations

import logging

from ..common import ConflictError, Keyspace, NotFoundError, ValidationError, validate_name
from ..coord import Compare, CoordStore, Delete, Put
from ._channels import Channel

log = logging.getLogger(__name__)


class ChannelRegistry:
    def __init__(self, store: CoordStore, keys: Keyspace) -> None:
        self.store = store
        self.keys = keys

    async def list(self) -> list[Channel]:
        kvs, _ = await self.store.get_prefix(self.keys.alert_channels)
        out = []
        for kv in kvs:
            try:
                out.append(Channel.from_stored(kv.value))
            except ValidationError as exc:
                log.error("skipping invalid alert channel at %s: %s", kv.key, exc)
        return sorted(out, key=lambda c: c.name)

    async def _get(self, name: str) -> tuple[Channel, int]:
        validate_name(name, "channel")
        kv = await self.store.get(self.keys.alert_channel(name))
        if kv is None:
            raise NotFoundError("alert channel", name)
        return Channel.from_stored(kv.value), kv.mod_revision

    async def get(self, name: str) -> Channel:
        return (await self._get(name))[0]

    async def create(self, data: object) -> Channel:
        channel = Channel.from_dict(data)
        key = self.keys.alert_channel(channel.name)
        result = await self.store.txn([Compare.absent(key)], [Put(key, channel.to_stored())])
        if not result.succeeded:
            raise ConflictError(f"alert channel {channel.name!r} already exists")
        return channel

    async def replace(self, name: str, data: object) -> tuple[Channel, Channel]:
        """Replace a channel; secrets not given are kept. Returns (before, after)."""
        before, revision = await self._get(name)
        after = Channel.from_dict(data, name=name, stored=before)
        key = self.keys.alert_channel(name)
        result = await self.store.txn([Compare.mod_revision(key, "==", revision)],
                                      [Put(key, after.to_stored())])
        if not result.succeeded:
            raise ConflictError(f"alert channel {name!r} changed meanwhile; retry")
        return before, after

    async def delete(self, name: str) -> Channel:
        before, revision = await self._get(name)
        key = self.keys.alert_channel(name)
        result = await self.store.txn([Compare.mod_revision(key, "==", revision)],
                                      [Delete(key)])
        if not result.succeeded:
            raise ConflictError(f"alert channel {name!r} changed meanwhile; retry")
        return before
