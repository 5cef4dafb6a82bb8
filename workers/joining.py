"""Small batches join the message that already waits for them, instead of sending their own.

Most transactions commit one event, so most jobs fed by them (``dispatch_event``,
``evaluate_rules``) carried one item, and paid a message's broker and middleware work, a
transaction and its fixed statements for it. A :class:`Joining` keeps, per *scope* (a
tenant, or the whole deployment), a flag "a message of this family will look" and a list
of the ids that joined it, in Redis (one script call each way):

- :meth:`Joining.join` (the sender): the flag is free, so it is taken and the caller
  sends its message; or it is held, and the ids are added to the list (nothing sent);
- :meth:`Joining.take` (the message, when it starts): what joined so far; ``release``
  frees the flag at once (the joined never wait for this message's run: they ride a
  message that was ahead of their own), otherwise the message keeps it while it runs
  and calls :meth:`Joining.end_turn` when done: the ids that joined meanwhile, which
  it sends on (their message keeps the flag), or nothing (the flag is freed).

The flag expires after :attr:`Joining.flag_ms` (a message lost on its way); the list is
a hint only: each family's rows are their own truth, and its scheduler's sweeper
re-drives those left waiting (a worker killed between a take and a send). With Redis
down every call answers as if nothing were waiting: each batch is sent on its own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from shared.redis_client import get_redis, key

log = logging.getLogger(__name__)

#: The flag is free: take it (the caller sends its batch); else add the ids to the list.
_JOIN = """
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 1 end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 0
"""
#: Everything joined so far; ARGV[1] = 1 frees the flag too.
_TAKE = """
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
return ids
"""
#: Nothing joined: free the flag; else everything joined (the flag stays, for its message).
_END_TURN = """
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
if #ids == 0 then redis.call('DEL', KEYS[1]) return ids end
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return ids
"""


@functools.cache
def _script(source: str) -> Any:
    return get_redis().register_script(source)


class Joining:
    """One job family's joins (``name`` keys its Redis flag and list per scope)."""

    def __init__(self, name: str, *, flag_ms: int = 5_000, list_ms: int = 60_000) -> None:
        self.name = name
        #: How long a sent message holds the flag at most (a lost message).
        self.flag_ms = flag_ms
        #: How long joined ids are kept without a message taking them.
        self.list_ms = list_ms

    def _keys(self, scope: str) -> list[str]:
        return [key("joining", self.name, "waiting", scope), key("joining", self.name, scope)]

    def join(self, scope: str, ids: Sequence[str]) -> bool:
        """Whether the ids joined a waiting message; False: the caller sends them, and now
        holds the flag (:meth:`clear` it if that send fails)."""
        try:
            args = [self.flag_ms, self.list_ms, *ids]
            return _script(_JOIN)(keys=self._keys(scope), args=args) == 0
        except RedisError:
            return False

    def take(self, scope: str, own: Sequence[str], *, release: bool) -> list[str]:
        """The ids that joined, in order, without duplicates or the message's ``own``."""
        try:
            taken = _script(_TAKE)(keys=self._keys(scope), args=[1 if release else 0])
        except RedisError:
            return []
        mine = set(own)
        return [i for i in dict.fromkeys(raw.decode() for raw in taken) if i not in mine]

    def end_turn(self, scope: str) -> list[str]:
        """What joined while the message ran (its sender keeps the flag), or [] (freed)."""
        try:
            taken = _script(_END_TURN)(keys=self._keys(scope), args=[self.flag_ms])
        except RedisError:
            return []
        return [raw.decode() for raw in taken]

    def clear(self, scope: str) -> None:
        """Free the flag (the message meant to hold it was not sent)."""
        try:
            get_redis().delete(self._keys(scope)[0])
        except RedisError:
            log.warning("could not clear the %s flag of %s; it expires", self.name, scope)
