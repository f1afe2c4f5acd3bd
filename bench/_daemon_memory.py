"""bench/daemon.py's memory child: a daemon started as `badged run` does, then N taps.

Run by bench/daemon.py (pcscd, card and host file ready) as
`python bench/_daemon_memory.py HOST_FILE TAPS`; prints one JSON line. It imports only the
standard modules below before the daemon's own, so its RSS is the daemon's.
"""

import json
import sys
import time
from pathlib import Path

LOOKUP = "Virtual PCD 00 01"


def vm(field: str) -> float:
    """A /proc/self/status memory field (VmRSS, VmHWM) in MB (10^6 bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    raise KeyError(field)


def main(host_file: str, taps: int) -> dict[str, float]:
    """In the child: a daemon built and started as `badged run` does, then the taps."""
    before_import = vm("VmRSS")
    from badged.config.host import load_host
    from badged.daemon.runtime import Daemon

    daemon = Daemon(load_host(Path(host_file)))
    daemon.start()
    reads = daemon.metrics.card_reads.labels(reader=LOOKUP)
    deadline = time.monotonic() + 10
    while reads._value.get() < 1:  # the reader thread reads the card at start-up
        if time.monotonic() > deadline:
            raise SystemExit("the daemon did not read the simulated card")
        time.sleep(0.02)
    started = vm("VmRSS")
    atr = daemon.readers._watcher.readers.get(LOOKUP) or b""
    t0 = time.perf_counter()
    for _ in range(taps):
        daemon.readers._card_inserted(LOOKUP, atr)
    elapsed = time.perf_counter() - t0
    done = reads._value.get() - 1
    errors = sum(s.value for m in daemon.metrics.card_read_errors.collect()
                 for s in m.samples if s.name.endswith("_total"))
    after = vm("VmRSS")
    daemon.request_stop()
    daemon.shutdown()
    return {"before_import": before_import, "started": started, "after": after,
            "hwm": vm("VmHWM"), "taps": done, "errors": errors,
            "tap_ms": elapsed / max(taps, 1) * 1000}



if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
