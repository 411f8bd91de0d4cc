"""CPU topology: which socket, core and LLC domain each CPU is on.

CPU numbering follows what Linux shows on x86 and arm64 servers: first one
thread of every core, socket by socket, then the SMT siblings in the same
order (so CPU n and n + cores are siblings). Online CPUs are the first
``cpus`` of them, as with ``maxcpus=`` on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcore.profile import HwProfile

SMT, SAME_LLC, CROSS_LLC, CROSS_SOCKET, SAME_CPU = range(5)


@dataclass(frozen=True)
class CpuPlace:
    cpu: int
    socket: int
    core: int  # global core number
    thread: int
    llc: int  # global LLC-domain (CCX) number


class Topology:
    def __init__(self, profile: HwProfile, cpus: int) -> None:
        t = profile.topology
        self.sockets = t.sockets.value
        self.cores_per_socket = t.cores_per_socket.value
        self.threads = t.threads_per_core.value
        self.cores_per_llc = max(1, t.cores_per_llc_domain.value)
        self.total_cores = self.sockets * self.cores_per_socket
        self.nr_cpus = cpus
        self.places = [self._place(c) for c in range(cpus)]
        c = profile.c2c_ns
        self._c2c_pair: dict[int, float] = {}
        # Indexed by distance class; SAME_CPU costs nothing to hand over.
        self._c2c = [
            c.smt.value,
            c.same_llc.value,
            c.cross_llc.value,
            c.cross_socket.value,
            0.0,
        ]

    def _place(self, cpu: int) -> CpuPlace:
        thread, core = divmod(cpu, self.total_cores)
        socket = core // self.cores_per_socket
        llc = core // self.cores_per_llc
        return CpuPlace(cpu=cpu, socket=socket, core=core, thread=thread, llc=llc)

    def distance(self, a: int, b: int) -> int:
        if a == b:
            return SAME_CPU
        pa, pb = self.places[a], self.places[b]
        if pa.socket != pb.socket:
            return CROSS_SOCKET
        if pa.core == pb.core:
            return SMT
        if pa.llc == pb.llc:
            return SAME_LLC
        return CROSS_LLC

    def c2c_ns(self, a: int, b: int) -> float:
        """Latency of moving one cache line from CPU a to CPU b."""
        # every lock hand-off asks this: cache the answers per pair (at most
        # nr_cpus^2 floats, filled only for pairs that meet)
        key = a * self.nr_cpus + b
        ns = self._c2c_pair.get(key)
        if ns is None:
            ns = self._c2c_pair[key] = self._c2c[self.distance(a, b)]
        return ns

    @property
    def c2c_same_llc_ns(self) -> float:
        """A cache-line transfer between cores sharing an LLC."""
        return self._c2c[SAME_LLC]

    def sockets_online(self) -> int:
        return len({p.socket for p in self.places})
