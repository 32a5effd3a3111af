"""The claims of one turn of the event loop, sent as one etcd transaction.

When many jobs share a tick, a worker claims its share of them at the same
moment (each job's plan is a task of its own). Sent one by one, each claim is
a request, a revision, and a watch response for every worker that follows
``/last``. ``ClaimBatcher.txn`` takes the transactions made during one turn
of the loop and sends them as one: each nested in a transaction of no
compare, where it is decided by its own compares, evaluated (as etcd
evaluates every compare of a transaction, nested ones included) on the store
as it was before the transaction. Transactions in one commit share no key
(``_release.batches``; etcd refuses a transaction that writes one key
twice), so each reads and writes exactly what it would have alone, and its
result is handed back as its own (with the commit's revision). A lone
transaction goes out as it is.

A commit that fails fails each transaction in it, with the error it would
have met alone: its caller retries, or settles a claim in doubt, as it would
have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..coord import Compare, CoordStore, Txn, TxnOp, TxnResult
from ._release import Queued, batches

# Transactions per commit. etcd allows 128 operations per branch, and a
# nested transaction only what its parent's branch leaves (128 less its
# length): a claim carrying MAX_OPS releases, each with its lock's own
# transaction, still fits under 32.
MAX_BATCH = 32


_Waiting = Queued[TxnResult]  # a claim


class ClaimBatcher:
    """``txn`` as a ``CoordStore``'s, sent with the others of the same loop turn."""

    def __init__(self, store: CoordStore, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self.commits = 0  # transactions sent to etcd (for tests and metrics)
        self._waiting: list[_Waiting] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def txn(self, compare: Sequence[Compare], success: Sequence[TxnOp],
                  failure: Sequence[TxnOp] = ()) -> TxnResult:
        waiting: _Waiting = Queued.of(Txn(tuple(compare), tuple(success), tuple(failure)))
        if not self._waiting:
            # once this turn's claims are in
            asyncio.get_running_loop().call_soon(self._send_waiting)
        self._waiting.append(waiting)
        # Cancelled before it is sent, it is not sent; after, its outcome is
        # lost to the caller, as a cancelled request's is.
        return await waiting.done

    def _send_waiting(self) -> None:
        waiting = [w for w in self._waiting if not w.done.done()]
        self._waiting = []
        for batch in batches(waiting, self.max_batch):
            task = asyncio.get_running_loop().create_task(self._send(batch), name="claims")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Waiting]) -> None:
        self.commits += 1
        try:
            if len(batch) == 1:
                one = batch[0].txn
                results = [await self.store.txn(one.compare, one.success, one.failure)]
            else:
                commit = await self.store.txn((), [w.txn for w in batch], ())
                results = [TxnResult(r.succeeded, commit.revision, r.gets, r.nested)
                           for r in commit.nested]
        except Exception as exc:
            for waiting in batch:
                waiting.fail(exc)
            return
        except BaseException:
            for waiting in batch:
                waiting.done.cancel()
            raise
        for waiting, result in zip(batch, results, strict=True):
            waiting.succeed(result)
