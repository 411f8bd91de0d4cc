"""Kernel locks on SimPy: a queued spinlock and a mutex with optimistic spin.

Both keep their waiters in a FIFO ``deque`` and hand the lock to the head
waiter on release. That is how qspinlock behaves (MCS queue: each waiter
spins on its own node and the releaser passes the lock to the next one), and
it sidesteps two SimPy pitfalls at large waiter counts: ``PriorityResource``
re-sorts its queue on every request and ``Store``-style lists pay
``list.pop(0)``; a deque is O(1) at both ends.

Hand-off cost is one cache-line transfer between the releasing and the
acquiring CPU (hardware.md section 6), so a lock bouncing across sockets is
slower than one staying within an LLC domain. Waiters of a spinlock burn
their CPU for the whole wait (charged as ``lock_spin`` overhead).

API, built for the hot path: ``acquire(cpu)`` returns ``None`` when the lock
was free (the caller pays ``uncontended_ns`` in its next timeout, saving one
SimPy event per uncontended acquisition) or an event to ``yield``.

The fast lock model (``sim.lock_model: fast``), which takes these locks by
computation on the vmalloc/vfree path, is :mod:`simcore.hw.locks_fast`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import simpy
from simpy.events import NORMAL

from simcore.hw.locks_fast import FastLockMixin, processed_event
from simcore.hw.topology import Topology
from simcore.metrics.registry import Metrics

# A mutex waiter spins while the owner is running (mutex_spin_on_owner) and
# goes to sleep once it has spun this long: estimate, standing in for
# need_resched() firing, about one scheduler tick slice at HZ=1000 / 100.
MUTEX_SPIN_LIMIT_NS = 10_000


@dataclass
class LockStats:
    acquisitions: int = 0
    contended: int = 0
    wait_ns: int = 0
    hold_ns: int = 0

    def export(self, name: str) -> dict[str, float]:
        pct = 100.0 * self.contended / self.acquisitions if self.acquisitions else 0.0
        return {
            f"lock.{name}.acquisitions": self.acquisitions,
            f"lock.{name}.wait_ns": self.wait_ns,
            f"lock.{name}.hold_ns": self.hold_ns,
            f"lock.{name}.contended_pct": round(pct, 6),
        }


def _trigger_at(env: simpy.Environment, ev: simpy.Event, delay: float) -> None:
    # Event.succeed() schedules with delay 0; the hand-off needs a delay, and
    # creating a Timeout only to chain a callback would cost a second event.
    ev._ok = True
    ev._value = None
    env.schedule(ev, NORMAL, delay)


class SpinLock(FastLockMixin):
    """``spinlock_t`` (qspinlock): FIFO hand-off, waiters spin on their CPU."""

    kind = "spinlock"

    def __init__(
        self,
        env: simpy.Environment,
        topo: Topology,
        metrics: Metrics,
        stats: LockStats,
        uncontended_ns: int,
        lag: list[int] | None = None,
    ) -> None:
        self.env = env
        self.topo = topo
        self.metrics = metrics
        self.stats = stats
        self.uncontended_ns = uncontended_ns
        self.owner: int | None = None
        self.last: int | None = None  # the previous holder
        self.waiters: deque[tuple[int, simpy.Event, int]] = deque()
        self._since = 0
        # fast model (simcore.hw.locks_fast): the per-CPU lag, and when the
        # latest hold ends
        self.lag = lag
        self.free_at = 0
        self._done = processed_event(env) if lag is not None else None

    def acquire(self, cpu: int) -> simpy.Event | None:
        env = self.env
        if self.owner is None and not self.waiters:
            if self.free_at <= env.now:
                self.owner = cpu
                self._since = env.now
                self.stats.acquisitions += 1
                return None
            # held by a fast holder until free_at: its release is a
            # hand-off at that time, as release() would make it
            ev = env.event()
            self.waiters.append((cpu, ev, env.now))
            done = env.timeout(self.free_at - env.now)
            done.callbacks.append(self._fast_handoff)
            return ev
        ev = env.event()
        self.waiters.append((cpu, ev, env.now))
        return ev

    def take(self, cpu: int):
        """Generator form of ``acquire``: returns the ns the caller still
        owes for an uncontended acquisition (0 after a hand-off). A CPU
        running ahead (fast model) first pays its lag, so it queues at its
        own time."""
        lag = self.lag
        if lag is not None and lag[cpu]:
            ahead, lag[cpu] = lag[cpu], 0
            yield self.env.timeout(ahead)
        ev = self.acquire(cpu)
        if ev is None:
            return self.uncontended_ns
        yield ev
        return 0

    def lock(self, cpu: int):
        """spin_lock() / mutex_lock() as a step of its own: take it and
        wait out any contention; the caller releases."""
        extra = yield from self.take(cpu)
        yield self.env.timeout(int(extra))

    def hold(self, cpu: int, work_ns: float):
        """Take the lock, spend ``work_ns`` in it, release it."""
        extra = yield from self.take(cpu)
        yield self.env.timeout(int(work_ns + extra))
        self.release(cpu)

    def line_ns(self, cpu: int, local_ns: float) -> float:
        """Cost, for the holder ``cpu``, of one cache line of the data the
        lock protects: ``local_ns`` when this CPU held the lock last (the
        line is still in its cache), else a transfer from the previous
        holder's cache, which wrote it. This is why a contended lock's
        critical sections lengthen: each hand-off moves the data too."""
        last = self.last
        if last is None or last == cpu:
            return local_ns
        return max(local_ns, self.topo.c2c_ns(last, cpu))

    def release(self, cpu: int) -> None:
        env = self.env
        now = env.now
        self.last = cpu
        self.stats.hold_ns += now - self._since
        if not self.waiters:
            self.owner = None
            return
        self._hand_off(cpu, now)

    def _fast_handoff(self, _event) -> None:
        # the end of a fast hold that exact waiters queued behind
        self._hand_off(self.last, self.env.now)

    def _hand_off(self, cpu: int | None, now: int) -> None:
        env = self.env
        nxt, ev, t0 = self.waiters.popleft()
        delay = self._extra_handoff(now - t0)
        if cpu is not None:
            delay += int(self.topo.c2c_ns(cpu, nxt))
        self.owner = nxt
        self._since = now + delay
        st = self.stats
        st.acquisitions += 1
        st.contended += 1
        st.wait_ns += now + delay - t0
        self._charge_wait(now + delay - t0)
        _trigger_at(env, ev, delay)

    def _extra_handoff(self, waited: int) -> int:
        return 0

    def _charge_wait(self, waited: int) -> None:
        self.metrics.cpu_time("lock_spin", waited)


class Mutex(SpinLock):
    """``struct mutex``: waiters spin while the owner runs, then sleep.

    A waiter that spun past ``MUTEX_SPIN_LIMIT_NS`` has gone to sleep, so
    handing it the lock costs a wake-up and context switch
    (``locks.mutex_wakeup_ns`` of the profile); only the spinning part of
    the wait is lost CPU time.
    """

    kind = "mutex"

    def __init__(self, *args, wakeup_ns: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.wakeup_ns = wakeup_ns

    def _extra_handoff(self, waited: int) -> int:
        return self.wakeup_ns if waited > MUTEX_SPIN_LIMIT_NS else 0

    def _charge_wait(self, waited: int) -> None:
        self.metrics.cpu_time("lock_spin", min(waited, MUTEX_SPIN_LIMIT_NS))
