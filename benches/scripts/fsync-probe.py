# python3 benches/scripts/fsync-probe.py [SECONDS] [FILE]: docs/benchmarks.md (ingest under query load).
# fsync latency probe: 4 KiB write + fdatasync, 50 times a second, like the ack path's WAL sync.
import os, sys, time
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 20
path = sys.argv[2] if len(sys.argv) > 2 else "fsync-probe.dat"
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 64 << 20)
os.fsync(fd)
buf = os.urandom(4096)
lat = []; wake = []
end = time.monotonic() + secs
off = 0
while time.monotonic() < end:
    t0 = time.perf_counter()
    os.pwrite(fd, buf, off); os.fdatasync(fd)
    lat.append((time.perf_counter() - t0) * 1000)
    off = (off + 4096) % (64 << 20)
    t1 = time.perf_counter(); time.sleep(0.02); wake.append((time.perf_counter() - t1 - 0.02) * 1000)
def q(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(p * len(v)))]
print(f"fdatasync ms: n {len(lat)} p50 {q(lat,.5):.2f} p99 {q(lat,.99):.2f} max {max(lat):.2f} | sleep overshoot ms p50 {q(wake,.5):.2f} p99 {q(wake,.99):.2f} max {max(wake):.2f}")
os.close(fd); os.unlink(path)
