"""``simcore capture --script``: one POSIX sh script that takes every
capture simcore reads from a host, at one moment, into one folder.

What it saves, and who reads it:

| file | from | read by |
| --- | --- | --- |
| ``buddyinfo.txt`` | ``/proc/buddyinfo`` | ``kernel.buddyinfo`` |
| ``meminfo.txt`` | ``/proc/meminfo`` | ``kernel.meminfo`` |
| ``vmstat.txt`` | ``/proc/vmstat`` | ``kernel.vmstat`` |
| ``vmallocinfo.txt`` | ``/proc/vmallocinfo`` (root) | ``kernel.vmallocinfo`` |
| ``proc-modules.txt``, ``lsmod.txt`` | ``/proc/modules``, ``lsmod`` | ``module_load`` |
| ``bpftool-prog-show.json`` | ``bpftool -j prog show`` (root) | ``bpf_jit`` |

/proc/vmallocinfo is readable by root only (``proc_create_single(...,
0400, ...)`` in mm/vmalloc.c) and prints its addresses with ``%pK``
(lib/vsprintf.c ``restricted_pointer()``): real ones only while
``kernel.kptr_restrict`` is 1 and the reader has CAP_SYSLOG; 0 prints
hashes and 2 zeroes. The script sets 1 for the moment of the read and puts
the old value back, also when interrupted.
"""

from __future__ import annotations

SCRIPT = r"""#!/bin/sh
# Collect the host captures simcore reads, all at one moment, into one
# folder (written by `simcore capture --script`).
#
#   sh capture.sh [DIR]
#
# /proc/vmallocinfo and bpftool need root: run as root, or where sudo works.
# Nothing is sent anywhere; read the files before sharing them (module and
# BPF program names, addresses of kernel memory).
set -u

dir=${1:-simcore-capture-$(uname -n 2>/dev/null || echo host)-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$dir" || exit 1
cd "$dir" || exit 1

note() { printf 'capture: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

# the counters first, close together, so that they describe one moment
cat /proc/buddyinfo > buddyinfo.txt
cat /proc/meminfo > meminfo.txt
cat /proc/vmstat > vmstat.txt
cat /proc/modules > proc-modules.txt 2>/dev/null \
    || { rm -f proc-modules.txt; note "no /proc/modules: a kernel without modules"; }
lsmod > lsmod.txt 2>/dev/null || { rm -f lsmod.txt; note "no lsmod: proc-modules.txt has the same"; }

# %pK prints real addresses only with kernel.kptr_restrict=1 to a reader
# with CAP_SYSLOG (0 hashes them, 2 prints zeroes): set 1 for the read
old=$(cat /proc/sys/kernel/kptr_restrict 2>/dev/null || echo 1)
restore() {
    if [ "$old" != 1 ]; then
        as_root sh -c "echo $old > /proc/sys/kernel/kptr_restrict"
    fi
}
if [ "$old" != 1 ]; then
    trap 'restore; exit 1' INT TERM HUP
    as_root sh -c 'echo 1 > /proc/sys/kernel/kptr_restrict' \
        || note "could not set kernel.kptr_restrict=1: addresses may be hashed"
fi
if as_root cat /proc/vmallocinfo > vmallocinfo.txt; then
    :
else
    rm -f vmallocinfo.txt
    note "could not read /proc/vmallocinfo: run as root or with sudo"
fi
restore
trap - INT TERM HUP

if command -v bpftool >/dev/null 2>&1; then
    as_root bpftool -j prog show > bpftool-prog-show.json \
        || { rm -f bpftool-prog-show.json; note "bpftool prog show failed (root?)"; }
else
    note "no bpftool: no BPF program capture"
fi
uname -r > uname.txt

gib=$(awk '/^MemTotal:/ { printf "%d", ($2 + 1048575) / 1048576 }' meminfo.txt)
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
here=$(pwd)
note "saved in $here"
cat <<EOF
# for a workload file (kernel $(cat uname.txt): pick the nearest preset,
# \`simcore list presets\`; give the profile this host's memory and CPUs)
machine:
  cpus: $cpus                # at most the profile's
  memory: {dram_bytes: ${gib}GiB}
kernel:
  buddyinfo: $here/buddyinfo.txt
  meminfo: $here/meminfo.txt
  vmstat: $here/vmstat.txt
EOF
[ -f vmallocinfo.txt ] && echo "  vmallocinfo: $here/vmallocinfo.txt"
echo "workloads:   # and the generators of your question: simcore list workloads"
[ -s proc-modules.txt ] \
    && echo "  - {type: module_load, modules: {from_proc_modules: $here/proc-modules.txt}}"
[ -f bpftool-prog-show.json ] \
    && echo "  - {type: bpf_jit, from_bpftool: $here/bpftool-prog-show.json}"
exit 0
"""


def capture_script() -> str:
    """The script's text (POSIX sh; ``sh -n`` accepts it)."""
    return SCRIPT
