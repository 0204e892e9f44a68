"""Budgets by reservation: a call's worst-case cost is reserved before it is sent and settled with its real
cost after, so nothing is sent that could carry a run's spend past its budget, however many calls are in
flight, in any mode and across workers.

The ledger lives where the rate limiter lives: ``MemoryBudgetLedger`` in this process (embedded mode),
``RedisBudgetLedger`` in Redis (distributed mode, shared by every worker). A run's entry is seeded from the
spend the database already holds (a resumed run, a flushed Redis), so settled spend is never forgotten; what
a flush loses is only the reservations of calls in flight at that moment.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:                               # the client is passed in (distributed mode: redis-py)
    import redis


RESERVED, WAIT, EXHAUSTED = "reserved", "wait", "exhausted"


class BudgetLedger(Protocol):
    def reserve(self, run_key: str, amount: float, budget: float, spent: float) -> str:
        """Reserve ``amount`` USD for one call of the run ``run_key`` (its id and start: unique across
        databases sharing one Redis) if settled spend + reservations + ``amount`` stays
        within ``budget``: ``RESERVED``; ``WAIT`` when it would fit once the calls in flight settle (their
        reservations are worst cases); ``EXHAUSTED`` when it cannot fit even then. ``spent`` (the database's
        figure) seeds a run the ledger does not know yet."""
        ...

    def settle(self, run_key: str, reserved: float, actual: float) -> None:
        """Release a reservation and record the call's real cost."""
        ...


class MemoryBudgetLedger:
    def __init__(self) -> None:
        self._runs: dict[str, list[float]] = {}      # run key -> [spent, reserved]
        self._lock = threading.Lock()

    def reserve(self, run_key: str, amount: float, budget: float, spent: float) -> str:
        with self._lock:
            entry = self._runs.setdefault(run_key, [spent, 0.0])
            if entry[0] + amount > budget:
                return EXHAUSTED
            if entry[0] + entry[1] + amount > budget:
                return WAIT
            entry[1] += amount
            return RESERVED

    def settle(self, run_key: str, reserved: float, actual: float) -> None:
        with self._lock:
            entry = self._runs.setdefault(run_key, [0.0, 0.0])
            entry[1] = max(0.0, entry[1] - reserved)
            entry[0] += actual

    def spent(self, run_key: str) -> float:
        with self._lock:
            return self._runs.get(run_key, [0.0, 0.0])[0]


# KEYS[1] = the run's hash. ARGV: amount, budget, spent (seed). Returns 1 reserved, 0 wait, -1 exhausted.
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'spent', ARGV[3], 'reserved', '0')
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent')) or 0
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved')) or 0
local amount = tonumber(ARGV[1])
if spent + amount > tonumber(ARGV[2]) then return -1 end
if spent + reserved + amount > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'reserved', tostring(reserved + amount))
redis.call('EXPIRE', KEYS[1], 604800)
return 1
"""

# KEYS[1]. ARGV: reserved, actual. After a flush lost the entry, nothing: the next reservation seeds the run
# from the database, which holds every settled cost.
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved')) or 0
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent')) or 0
redis.call('HSET', KEYS[1], 'reserved', tostring(math.max(0, reserved - tonumber(ARGV[1]))),
           'spent', tostring(spent + tonumber(ARGV[2])))
redis.call('EXPIRE', KEYS[1], 604800)
return 1
"""


class RedisBudgetLedger:
    def __init__(self, client: redis.Redis, key_prefix: str = "accord:budget") -> None:
        self.client = client
        self.key_prefix = key_prefix
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)

    def _key(self, run_key: str) -> str:
        return f"{self.key_prefix}:{run_key}"

    def reserve(self, run_key: str, amount: float, budget: float, spent: float) -> str:
        answer = int(self._reserve(keys=[self._key(run_key)], args=[repr(amount), repr(budget), repr(spent)]))
        return {1: RESERVED, 0: WAIT}.get(answer, EXHAUSTED)

    def settle(self, run_key: str, reserved: float, actual: float) -> None:
        self._settle(keys=[self._key(run_key)], args=[repr(reserved), repr(actual)])
