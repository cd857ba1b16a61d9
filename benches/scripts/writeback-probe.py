# python3 benches/scripts/writeback-probe.py none|whole|smooth [SECONDS] [DIR]: docs/benchmarks.md.
# Does a flush's segment fsync stall the WAL's fdatasync? Probe: 4 KiB pwrite +
# fdatasync at 50 Hz (the ack path's WAL sync). Writer: a 32 MiB file every 2 s,
# either written whole then fsynced (mode "whole"), or in 1 MiB chunks each handed
# to writeback at once with sync_file_range (mode "smooth"), then fsynced.
import os, sys, time, threading, ctypes
libc = ctypes.CDLL("libc.so.6", use_errno=True)
W, WB, WA = 2, 1, 4
def sfr(fd, off, n, fl):
    if libc.sync_file_range(fd, ctypes.c_longlong(off), ctypes.c_longlong(n), ctypes.c_uint(fl)) != 0: raise OSError(ctypes.get_errno(), "sync_file_range")
mode = sys.argv[1]; secs = float(sys.argv[2]) if len(sys.argv) > 2 else 20
d = sys.argv[3] if len(sys.argv) > 3 else "writeback-probe"; os.makedirs(d, exist_ok=True)
stop = False
def writer():
    buf = os.urandom(1 << 20); i = 0
    while not stop:
        p = f"{d}/seg{i % 4}"; i += 1
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for c in range(32):
            os.write(fd, buf)
            if mode == "smooth":
                sfr(fd, c << 20, 1 << 20, W)
                if c >= 2:
                    sfr(fd, (c - 2) << 20, 1 << 20, WB | W | WA)
        os.fsync(fd); os.close(fd)
        time.sleep(2)
fd = os.open(f"{d}/wal", os.O_RDWR | os.O_CREAT, 0o644); os.ftruncate(fd, 64 << 20); os.fsync(fd)
t = threading.Thread(target=writer) if mode != "none" else None
if t: t.start()
buf = os.urandom(4096); lat = []; off = 0; end = time.monotonic() + secs
while time.monotonic() < end:
    t0 = time.perf_counter(); os.pwrite(fd, buf, off); os.fdatasync(fd); lat.append((time.perf_counter() - t0) * 1000)
    off = (off + 4096) % (64 << 20); time.sleep(0.02)
stop = True
if t: t.join()
lat.sort(); q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{mode}: n {len(lat)} p50 {q(.5):.2f} p99 {q(.99):.2f} p99.9 {q(.999):.2f} max {lat[-1]:.2f} ms")
import shutil; shutil.rmtree(d, ignore_errors=True)
