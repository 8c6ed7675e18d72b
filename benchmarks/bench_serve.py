"""Load test of the HTTP service with a compiled load generator (wrk), beside a bare FastAPI floor app.

    python benchmarks/bench_serve.py                          # two-tower on 3,000 items, 1/8/50 connections
    python benchmarks/bench_serve.py --model-dir runs/bpr --seconds 10 --runs 3 --pin

It trains ``--model`` on a synthetic shop (unless ``--model-dir`` is given) and starts, as two processes
under the same uvicorn settings (one worker, access log off, log level warning):

* the embrec server (``embrec.serve.serve``) on that model directory;
* the floor: a bare FastAPI app whose ``GET /healthz`` returns a constant small JSON object.

For every endpoint (floor /healthz, /healthz, /recommend by user, /recommend by a 10-item history,
/similar, /embed, /recommend/batch of 10 users) and every connection count (1, 8, 50), ``wrk --latency``
runs for ``--seconds``; the whole grid is repeated ``--runs`` times (cells interleaved, so load changes
hit every cell alike). Bodies are drawn at random (Lua) from 200 prepared requests. It reports
requests/s, p50/p99 latency, non-2xx responses and socket errors, the ratio of each cell to the floor
and to the same run's /healthz, the spread (min–max over runs) and ``uptime`` before and after, and the
server's CPU time per request (all its threads, ``/proc/PID/task/*/schedstat``, over the cell): on a
shared machine the other processes take CPU share away from the server, which moves requests/s and
latency, while the CPU a request costs moves much less.
``--pin`` pins the server(s) to CPU 0 and wrk to CPU 1 (taskset). wrk is the Debian package ``wrk``;
when it is not on PATH the script installs it with apt-get (and says so).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLOOR_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/healthz")
async def healthz():
    return {"status": "ok", "model": "floor"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""
SERVER = (
    "import sys; from embrec.serve import serve; "
    "serve(sys.argv[1], '127.0.0.1', int(sys.argv[2]), log_level='warning')"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    path = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)
    if path:
        return path
    print("wrk not found: installing the Debian package with apt-get", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
    return shutil.which("wrk") or "/usr/bin/wrk"


def prepare_model(args: argparse.Namespace, tmp: Path) -> Path:
    if args.model_dir:
        return Path(args.model_dir)
    from embrec.datasets import synthetic
    from embrec.models import create

    log = synthetic(
        n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=0
    )
    model = create(args.model).fit(log)
    return model.save(tmp / args.model)


def start(cmd: list[str], cpu: str | None) -> subprocess.Popen:
    prefix = ["taskset", "-c", cpu] if cpu is not None else []
    return subprocess.Popen(prefix + cmd, cwd=ROOT)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the server did not answer /healthz in time")


def bodies(model_dir: Path, seed: int = 0) -> dict[str, list[dict]]:
    """200 request bodies per POST endpoint, from the model's own vocabularies."""
    from embrec import api

    model = api.open_model(model_dir)
    rng = random.Random(seed)
    users = [u for u in model.users_.raw_ids.tolist()]
    items = model.items_.raw_ids.tolist()
    out = {
        "recommend-user": [{"user": rng.choice(users), "k": 10} for _ in range(200)],
        "recommend-history": [{"history": rng.sample(items, 10), "k": 10} for _ in range(200)],
        "similar": [{"item": rng.choice(items), "k": 10} for _ in range(200)],
        "embed": [{"history": rng.sample(items, 10)} for _ in range(200)],
        "recommend-batch": [{"users": rng.sample(users, 10), "k": 10} for _ in range(200)],
    }
    return out


PATHS = {
    "recommend-user": "/recommend",
    "recommend-history": "/recommend",
    "similar": "/similar",
    "embed": "/embed",
    "recommend-batch": "/recommend/batch",
}


def lua_script(path: str, reqs: list[dict], where: Path) -> Path:
    rows = ",\n".join("[[" + json.dumps(b) + "]]" for b in reqs)
    where.write_text(f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {{
{rows}
}}
request = function()
  return wrk.format("POST", "{path}", nil, bodies[math.random(#bodies)])
end
""")
    return where


def cpu_seconds(pid: int) -> float:
    """CPU time the process has run so far, all its threads (``/proc/PID/task/*/schedstat``, ns)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that just ended
            continue
    return total / 1e9


def run_wrk(
    wrk: str,
    url: str,
    conns: int,
    seconds: float,
    script: Path | None,
    cpu: str | None,
    server_pid: int,
) -> dict:
    cmd = [
        wrk,
        f"-t{min(conns, 2)}",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if cpu is not None:
        cmd = ["taskset", "-c", cpu] + cmd
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu_used = cpu_seconds(server_pid) - cpu_before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "requests": requests,
        # server CPU per request: what a busy machine changes least (the CPU share is what it takes away)
        "cpu_us": cpu_used / max(requests, 1) * 1e6,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(re.search(r"\s50%\s+([\d.]+\w+)", out).group(1)),
        "p99": _ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1)),
        "non2xx": int(m.group(1))
        if (m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out))
        else 0,
        "socket_errors": sum(
            int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)
        ),
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="two-tower")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--interactions", type=int, default=60_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", default="1,8,50")
    ap.add_argument("--pin", action="store_true", help="servers on CPU 0, wrk on CPU 1 (taskset)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    wrk = ensure_wrk()
    conns = [int(c) for c in args.connections.split(",")]
    server_cpu, wrk_cpu = ("0", "1") if args.pin else (None, None)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = prepare_model(args, tmp)
        reqs = bodies(model_dir)
        scripts = {
            name: lua_script(PATHS[name], b, tmp / f"{name}.lua") for name, b in reqs.items()
        }
        floor_port, port = free_port(), free_port()
        floor = start([sys.executable, "-c", FLOOR_APP, str(floor_port)], server_cpu)
        server = start([sys.executable, "-c", SERVER, str(model_dir), str(port)], server_cpu)
        try:
            wait_healthy(f"http://127.0.0.1:{floor_port}", floor)
            wait_healthy(f"http://127.0.0.1:{port}", server)
            for name, b in reqs.items():  # every body must be a 200 before timing
                r = httpx.post(f"http://127.0.0.1:{port}{PATHS[name]}", json=b[0], timeout=30)
                if r.status_code != 200:
                    raise RuntimeError(f"{name} answered {r.status_code}: {r.text[:200]}")
            load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            cells = [
                ("floor /healthz", f"http://127.0.0.1:{floor_port}/healthz", None, floor.pid),
                ("/healthz", f"http://127.0.0.1:{port}/healthz", None, server.pid),
            ]
            cells += [
                (name, f"http://127.0.0.1:{port}", scripts[name], server.pid) for name in reqs
            ]
            results: dict[tuple[str, int], list[dict]] = {}
            for _ in range(args.runs):
                for c in conns:
                    for label, url, script, pid in cells:
                        results.setdefault((label, c), []).append(
                            run_wrk(wrk, url, c, args.seconds, script, wrk_cpu, pid)
                        )
            load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        finally:
            for proc in (server, floor):
                proc.terminate()
                proc.wait(timeout=30)
    report(results, cells, conns, args, load_before, load_after)


def report(results, cells, conns, args, load_before: str, load_after: str) -> None:
    print(
        f"wrk, {args.seconds:g} s per cell, {args.runs} runs (median; min-max), model {args.model_dir or args.model}"
        f"{', pinned' if args.pin else ''}"
    )
    print(f"load before: {load_before}\nload after:  {load_after}")
    print(
        "| endpoint | conns | req/s | p50 ms | p99 ms | × floor req/s | × /healthz req/s | p50 ÷ floor p50 "
        "| server CPU µs/req | × /healthz CPU | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    out = []
    for c in conns:
        floor = results[("floor /healthz", c)]
        health = results[("/healthz", c)]
        for label, *_ in cells:
            rs = results[(label, c)]
            rps = [r["rps"] for r in rs]
            x_floor = [r["rps"] / f["rps"] for r, f in zip(rs, floor)]
            x_health = [r["rps"] / h["rps"] for r, h in zip(rs, health)]
            p50 = [r["p50"] for r in rs]
            p50_ratio = [r["p50"] / f["p50"] for r, f in zip(rs, floor)]
            errors = sum(r["non2xx"] + r["socket_errors"] for r in rs)
            cpu = [r["cpu_us"] for r in rs]
            cpu_ratio = [r["cpu_us"] / h["cpu_us"] for r, h in zip(rs, health)]
            print(
                f"| {label} | {c} | {np.median(rps):,.0f} ({min(rps):,.0f}-{max(rps):,.0f}) | "
                f"{np.median(p50):.2f} | {np.median([r['p99'] for r in rs]):.2f} | "
                f"{np.median(x_floor):.2f} ({min(x_floor):.2f}-{max(x_floor):.2f}) | "
                f"{np.median(x_health):.2f} ({min(x_health):.2f}-{max(x_health):.2f}) | "
                f"{np.median(p50_ratio):.2f} | {np.median(cpu):,.0f} ({min(cpu):,.0f}-{max(cpu):,.0f}) | "
                f"{np.median(cpu_ratio):.2f} | {errors} |"
            )
            out.append({"endpoint": label, "connections": c, "runs": rs})
    if args.json:
        args.json.write_text(
            json.dumps({"cells": out, "load": [load_before, load_after]}, indent=1)
        )


if __name__ == "__main__":
    main()
