"""Load on the Gradio demo's API: small requests from several clients while one client sends budget-sized images.

    python bench/load_gradio.py [--clients 4] [--requests 20] [--big-megapixels 50] [--big-pause 0]
                                [--big-format jpeg|geotiff] [--small-size 256] [--concurrency 2] [--time-budget 120] [--checkpoint auto]

Starts ``python -m workbench.gradio_app`` on a free port of 127.0.0.1 (nothing else is contacted) and measures,
side by side in one run, small requests (each a new image, so no answer comes from the results cache):
  1. from one client (after a warm-up);
  2. from ``--clients`` clients at once, each sending its next request as soon as the last is answered;
  3. the same while one more client keeps sending a JPEG (or, ``--big-format geotiff``, a deflate GeoTIFF: 49 MP in
     1.6 MB) of ``--big-megapixels`` (the pixel budget: it passes the header check, then the time budget refuses it,
     from its window count before decoding or from its first windows);
and prints the p50 / p95 / max latency of each phase, what became of the big requests, and the server's memory
(VmRSS) before, at its peak (VmHWM) and after. The clients run on the same machine as the server and share its
cores. Target (issue 10): small p95 under 3 s on 2 CPU cores in phase 3.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mem_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def _small(folder: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(n)
    base = rng.integers(60, 200, (1, 1, 3))
    img = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    path = folder / f"small-{n}.png"
    Image.fromarray(img).save(path)
    return path


def _big(folder: Path, megapixels: float) -> Path:
    side = int((megapixels * 1e6) ** 0.5)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    img = np.stack([(x / side * 200 + 30), (y / side * 200 + 30), np.full_like(x, 120)], -1)
    img += np.random.default_rng(0).normal(0, 8, (side, 1, 1)).astype(np.float32)
    path = folder / f"big-{side}x{side}.jpg"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=85)
    return path


def _big_geotiff(folder: Path, megapixels: float) -> Path:
    """The same picture as a deflate-compressed, tiled GeoTIFF (issue 29: 49 MP in 1.6 MB held a worker 13-24 s
    before the refusal), georeferenced like an orthophoto."""
    import rasterio
    from rasterio.transform import from_origin

    side = int((megapixels * 1e6) ** 0.5)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    img = np.stack([(x / side * 200 + 30), (y / side * 200 + 30), np.full_like(x, 120)])
    path = folder / f"big-{side}x{side}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs="EPSG:32640",
                       transform=from_origin(300000, 2800000, 0.3, 0.3), compress="deflate", tiled=True) as dst:
        dst.write(np.clip(img, 0, 255).astype(np.uint8))
    return path


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=20, help="small requests per client")
    p.add_argument("--big-megapixels", type=float, default=50.0)
    p.add_argument("--big-format", choices=("jpeg", "geotiff"), default="jpeg",
                   help="the big client's file: a JPEG, or a deflate GeoTIFF (small on the wire, large decoded)")
    p.add_argument("--small-size", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--time-budget", type=float, default=120.0)
    p.add_argument("--checkpoint", default="auto")
    p.add_argument("--runs-root", default=None,
                   help="runs whose models auto may choose (default: none, the shipped models only, as on a fresh "
                        "machine; each candidate costs encoder crops per image)")
    p.add_argument("--limit-s", type=float, default=900.0, help="give up after this long")
    p.add_argument("--big-pause", type=float, default=0.0, help="seconds the big client waits between its sends")
    p.add_argument("--no-download", action="store_true",
                   help="clients take the answer without fetching its files (the server's work alone)")
    args = p.parse_args(argv)

    from gradio_client import Client, handle_file

    def dl(folder: Path) -> str | bool:
        return False if args.no_download else str(folder)

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at start")
    tmp = Path(tempfile.mkdtemp(prefix="load-gradio-"))
    port = _free_port()
    env = {**os.environ, "FALSE_WB_RUNS": args.runs_root or str(tmp / "no-runs")}
    server = subprocess.Popen([sys.executable, "-m", "workbench.gradio_app", "--port", str(port), "--host",
                               "127.0.0.1", "--checkpoint", args.checkpoint, "--concurrency", str(args.concurrency),
                               "--time-budget", str(args.time_budget), "--max-megapixels",
                               str(args.big_megapixels + 1)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        client = None
        while client is None and time.time() < deadline:
            try:
                client = Client(url, verbose=False, analytics_enabled=False, download_files=dl(tmp / "dl"))
            except Exception:  # noqa: BLE001 - not up yet
                if server.poll() is not None:
                    print(server.stderr.read(), file=sys.stderr)
                    return 1
                time.sleep(1)
        if client is None:
            print("the server did not come up in 180 s", file=sys.stderr)
            return 1
        counter = iter(range(10**9))
        lock = threading.Lock()

        def small_request(c: Any) -> float:
            with lock:
                n = next(counter)
            path = _small(tmp, n, args.small_size)
            t0 = time.perf_counter()
            c.predict(handle_file(str(path)), api_name="/segment")
            return time.perf_counter() - t0

        for _ in range(3):
            small_request(client)  # warm-up: model loading, first forward
        before = _mem_mb(server.pid)
        alone = [small_request(client) for _ in range(args.requests)]

        big = (_big_geotiff if args.big_format == "geotiff" else _big)(tmp, args.big_megapixels)
        print(f"big image: {big.name}, {big.stat().st_size / 1e6:.1f} MB {args.big_format}")
        big_results: list[tuple[float, str]] = []

        def big_client(stop: threading.Event) -> None:
            c = Client(url, verbose=False, analytics_enabled=False, download_files=dl(tmp / "dl-big"))
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    c.predict(handle_file(str(big)), api_name="/segment")
                    outcome = "answered"
                except Exception as err:  # noqa: BLE001 - the time budget's refusal is the expected answer
                    outcome = str(err).splitlines()[0][:160]
                big_results.append((time.perf_counter() - t0, outcome))
                stop.wait(args.big_pause)

        def clients_phase(with_big: bool) -> tuple[list[float], list[str], float]:
            times: list[float] = []
            errors: list[str] = []

            def small_client() -> None:
                c = Client(url, verbose=False, analytics_enabled=False, download_files=dl(tmp / "dl-small"))
                for _ in range(args.requests):
                    try:
                        times.append(small_request(c))
                    except Exception as err:  # noqa: BLE001
                        errors.append(str(err).splitlines()[0][:160])

            stop = threading.Event()
            t_start = time.perf_counter()
            bt = threading.Thread(target=big_client, args=(stop,), daemon=True) if with_big else None
            if bt is not None:
                bt.start()
                time.sleep(2.0)  # the big request is under way when the small ones start
            threads = [threading.Thread(target=small_client, daemon=True) for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=max(1.0, args.limit_s - (time.perf_counter() - t_start)))
            stop.set()
            if bt is not None:
                bt.join(timeout=args.time_budget + 60)
            return times, errors, time.perf_counter() - t_start

        plain, plain_errors, _ = clients_phase(with_big=False)
        loaded, errors, wall = clients_phase(with_big=True)
        errors += plain_errors
        time.sleep(2.0)
        after = _mem_mb(server.pid)

        print(f"\nsmall requests ({args.small_size}x{args.small_size} PNG, each a new image), seconds:")
        print(f"  {'phase':44s} {'n':>4s} {'p50':>7s} {'p95':>7s} {'max':>7s}")
        for label, xs in (("alone, one client", alone), (f"{args.clients} clients", plain),
                          (f"{args.clients} clients + one sending {args.big_megapixels:g} MP", loaded)):
            print(f"  {label:44s} {len(xs):4d} {_pct(xs, 50):7.2f} {_pct(xs, 95):7.2f} {max(xs or [0]):7.2f}")
        print(f"  p95 with the big client / p95 of the {args.clients} clients alone: "
              f"{_pct(loaded, 95) / _pct(plain, 95):.2f}x; "
              f"{len(plain) + len(loaded)} of {2 * args.clients * args.requests} answered, {len(errors)} errors"
              + (f" (first: {errors[0]})" if errors else ""))
        print(f"big requests ({args.big_megapixels:g} MP, {args.big_pause:g} s apart) during the {wall:.0f} s of "
              f"load: {len(big_results)}; seconds each: " + ", ".join(f"{t:.1f}" for t, _ in big_results[:12]))
        for outcome in sorted({o for _, o in big_results}):
            print(f"  answer: {outcome}")
        print(f"server memory, MB: before load {before['VmRSS']:.0f}, peak {after['VmHWM']:.0f}, after "
              f"{after['VmRSS']:.0f}")
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
        target = _pct(loaded, 95) < 3.0
        print(f"target small p95 < 3 s under load: {'met' if target else 'MISSED'}")
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
