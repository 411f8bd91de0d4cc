"""The fast lock model: waiting in a lock's line computed, not simulated.

With ``sim.lock_model: fast`` the locks of the vmalloc/vfree path are
taken without SimPy events. A CPU's process may then run ahead of SimPy's
clock: its *lag* (``lag[cpu]``, one list shared by every lock of the
machine) is time it has spent without yielding. The sites take their locks
with ``take_lagged()`` and end each section with ``yield
lock.section(cpu, ns)`` and ``lock.leave(cpu)``; in the exact model
(``lag`` is None) these are the plain ``take()``, the section's timeout and
``release()``, step for step as before.

A CPU pays its lag (one timeout) before it takes a lock, so that every
request reaches the lock at the CPU's own time, in the order SimPy runs
them, which is time order. Then:

- the lock is free (its last hold ended by now): the CPU holds it from now
  for its section, uncontended;
- a CPU that took it fast holds it until ``free_at``: the CPU waits in line
  behind it, and its hold starts at ``free_at`` plus the hand-off that
  ``release()`` charges (the cache-line transfer from the last holder and,
  for a mutex past its spin limit, the wake-up). The wait and the section
  go into the lag, with no event: this is where the events go;
- a CPU holds it the exact way (a path that does not use the fast model),
  or waiters are queued: the CPU queues as in the exact model, so FIFO
  order holds among queued waiters; a fast holder hands the lock to them
  at ``free_at``.

The lock-free work between sections goes into the lag too, and vmalloc()
and vfree() pay what is left at their end, so an operation still ends at
the same time. What the model gives up: a section's effect on the data its
lock protects is made when the CPU joins the line, before its turn; the
order of those effects is the order of the line, as in the exact model, but
code reading that data without the lock may see it early. A test holds the
two models to the same counters and latencies on the event-heavy workloads.
"""

from __future__ import annotations

import simpy


def processed_event(env: simpy.Environment) -> simpy.Event:
    """An event that has happened: yielding it costs no scheduling (SimPy
    resumes the process at once with its value)."""
    ev = simpy.Event(env)
    ev._ok = True
    ev._value = None
    ev.callbacks = None
    return ev


class FastLockMixin:
    """The fast model's half of :class:`simcore.hw.locks.SpinLock`."""

    def take_lagged(self, cpu: int):
        """Generator: pay the CPU's lag, then ``take_fast``, or ``take``
        when the lock must be taken the exact way."""
        lag = self.lag
        if lag is None:
            return (yield from self.take(cpu))
        ahead = lag[cpu]
        if ahead:
            lag[cpu] = 0
            yield self.env.timeout(ahead)
        if self.owner is not None or self.waiters:
            return (yield from self.take(cpu))
        self.stats.acquisitions += 1
        return self.uncontended_ns

    def release_fast(self, cpu: int, ns: int) -> None:
        """End a section of ``ns`` taken by ``take_lagged`` at the current
        time: in line behind the latest fast hold if it is not over, and
        the wait and the section into the CPU's lag."""
        now = self.env.now
        free = self.free_at
        start = now
        if free > now:
            # a hand-off from the fast holder, not a free lock
            ns -= self.uncontended_ns
            start = free + self._extra_handoff(free - now)
            if self.last is not None:
                start += int(self.topo.c2c_ns(self.last, cpu))
            waited = start - now
            st = self.stats
            st.contended += 1
            st.wait_ns += waited
            self._charge_wait(waited)
        self.stats.hold_ns += ns
        self.free_at = start + ns
        self.last = cpu
        self.lag[cpu] = start + ns - now

    def section(self, cpu: int, ns: int):
        """The event a section of ``ns`` ends with: its timeout when the
        lock was taken the exact way; else the section is placed behind the
        latest hold (``release_fast``) and the event is one already
        processed, which SimPy passes through without scheduling anything.
        ``leave()`` follows it."""
        if self.owner == cpu:
            return self.env.timeout(ns)
        self.release_fast(cpu, ns)
        return self._done

    def leave(self, cpu: int) -> None:
        """After ``section()``'s event: ``release()`` for an exact hold
        (a fast one ended in ``release_fast``)."""
        if self.owner == cpu:
            self.release(cpu)
