"""Load test of the HTTP service: N concurrent clients for a fixed time against 127.0.0.1; stops by itself.

    .venv/bin/python benchmarks/bench_serve.py                           # two-tower, 50 clients, 20 s
    .venv/bin/python benchmarks/bench_serve.py --model bpr --clients 20 --seconds 10
    .venv/bin/python benchmarks/bench_serve.py --model-dir runs/mymodel  # serve an existing model directory

It trains ``--model`` on a synthetic shop (unless ``--model-dir`` is given), starts ``embrec.serve.serve``
in a subprocess (one uvicorn worker), waits for /healthz, then runs two phases with the same clients:

1. ``GET /healthz`` for ``--floor-seconds``: the framework's floor (FastAPI + uvicorn + JSON, no model);
2. a mix for ``--seconds``: 50% POST /recommend by known user (exclude_seen), 20% /recommend by a
   3-10 item history (a new user, folded in), 20% /similar (cosine), 10% /embed; k = 10.

Every response must be a 200; anything else (or a connection error) is counted as an error.
Throughput, p50/p99 latency per phase and per endpoint are printed as a markdown table.
The load generator (asyncio + httpx) runs on the same machine as the server and shares its CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from embrec.models.io import model_files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_model(args: argparse.Namespace, tmp: Path) -> Path:
    if args.model_dir:
        return Path(args.model_dir)
    from embrec.datasets import synthetic
    from embrec.models import create

    log = synthetic(n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=0)
    t = time.perf_counter()
    model = create(args.model).fit(log)
    print(f"trained {args.model} on {len(log):,} events ({log.n_users:,} users, {log.n_items:,} items) "
          f"in {time.perf_counter() - t:.1f} s", flush=True)
    return model.save(tmp / args.model)


def start_server(model_dir: Path, port: int) -> subprocess.Popen:
    code = ("import sys; from embrec.serve import serve; "
            "serve(sys.argv[1], '127.0.0.1', int(sys.argv[2]), log_level='warning')")
    return subprocess.Popen([sys.executable, "-c", code, str(model_dir), str(port)],
                            cwd=Path(__file__).resolve().parents[1])


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the server did not answer /healthz in time")


def workload(model_dir: Path, seed: int):
    """A function returning a random (name, method, path, body) request of the mix."""
    files = model_files(model_dir)  # the current version of the model directory
    users = json.loads((files / "users.json").read_text())["ids"]
    items = json.loads((files / "items.json").read_text())["ids"]
    rng = random.Random(seed)

    def next_request() -> tuple[str, str, str, dict | None]:
        x = rng.random()
        if x < 0.5:
            return "recommend user", "POST", "/recommend", {"user": rng.choice(users), "k": 10, "exclude_seen": True}
        if x < 0.7:
            hist = rng.sample(items, rng.randint(3, 10))
            return "recommend history", "POST", "/recommend", {"history": hist, "k": 10}
        if x < 0.9:
            return "similar", "POST", "/similar", {"item": rng.choice(items), "k": 10, "measure": "cosine"}
        return "embed", "POST", "/embed", {"history": rng.sample(items, rng.randint(3, 10))}

    return next_request


async def load(url: str, clients: int, seconds: float, next_request) -> list[tuple[str, float, bool]]:
    """``clients`` concurrent loops until the deadline; returns (endpoint, latency s, ok) per request."""
    records: list[tuple[str, float, bool]] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                name, method, path, body = next_request()
                t0 = time.perf_counter()
                try:
                    r = await client.request(method, path, json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                records.append((name, time.perf_counter() - t0, ok))

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return records


def summarise(label: str, records: list[tuple[str, float, bool]], seconds: float) -> dict:
    lat = np.array([r[1] for r in records]) * 1000
    return {"phase": label, "requests": len(records), "errors": sum(not r[2] for r in records),
            "req_per_s": len(records) / seconds, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="two-tower")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--floor-seconds", type=float, default=5.0)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="embrec-bench-serve-") as tmp:
        model_dir = prepare_model(args, Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(model_dir, port)
        try:
            health = wait_healthy(url, proc)
            print(f"serving {health['model']} ({health['n_items']:,} items, {health['index']} index) at {url}",
                  flush=True)
            load_before = os.getloadavg()[0]
            floor = asyncio.run(load(url, args.clients, args.floor_seconds,
                                     lambda: ("healthz", "GET", "/healthz", None)))
            mixed = asyncio.run(load(url, args.clients, args.seconds, workload(model_dir, seed=0)))
            load_after = os.getloadavg()[0]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    rows = [summarise("GET /healthz (floor)", floor, args.floor_seconds),
            summarise("mix (all endpoints)", mixed, args.seconds)]
    for name in ("recommend user", "recommend history", "similar", "embed"):
        part = [r for r in mixed if r[0] == name]
        if part:
            rows.append(summarise(f"  {name}", part, args.seconds))
    print(f"\n{health['model']} on {health['n_items']:,} items; {args.clients} clients, {args.seconds:g} s "
          f"(+{args.floor_seconds:g} s floor); 1 uvicorn worker; {os.cpu_count()} CPUs shared with the load "
          f"generator; 1-min load average {load_before:.1f} before, {load_after:.1f} after\n")
    print("| phase | requests | errors | requests/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['requests']:,} | {r['errors']} | {r['req_per_s']:,.0f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": health["model"], "clients": args.clients,
                                              "load_average": [load_before, load_after],
                                              "seconds": args.seconds, "rows": rows}, indent=2))
    if any(r["errors"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
