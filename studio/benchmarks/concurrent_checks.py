"""A bounded load test: many visitors check a dataset in the Data tab at once, optionally while a run trains.

    python -m studio.benchmarks.concurrent_checks [--rows 5000] [--clients 20] [--model demo] [--train]

Starts the studio in a subprocess on 127.0.0.1 (a free port; nothing else is contacted), writes a JSONL file of
R1 rows, times one check alone, then `--clients` checks at once, each from its own gradio_client session (its own
upload), and prints p50 / p95 / max against the lone call (target: p95 at most 3x). With `--train` a demo run
trains during the whole test and its tokens/s while idle and during the burst are compared (target: at least
half). Bounded: at most 50 clients, every call and the whole test under `--timeout` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from studio.benchmarks.checks_speed import write_rows

MAX_CLIENTS = 50
# The Train tab's inputs after the dataset, in its order (model, method, lr, r, alpha, dropout, max_length, batch,
# accumulation, epochs, warmup, max_steps, targets, schedule, eval split, save steps, seed, checkpointing,
# trackers, speed-ups, field mapping, save minutes): the demo model, a run long enough to outlast the test.
DEMO_TRAIN_SETTINGS = ["demo", "lora", 2e-3, 8, 16, 0.0, 256, 8, 1, 1, 0.0, 2000, "all-linear", "cosine", 0.0, 0,
                       42, "auto", [], [], "", 10]
SERVER = """
import sys
from studio.ui import app as studio_app
app = studio_app.build_app()
app.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True, prevent_thread_lock=False,
                   **studio_app.launch_settings())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home: Path, timeout: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "STUDIO_HOME": str(home), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, url
        except OSError:
            if server.poll() is not None:
                raise RuntimeError("the studio did not start")
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the studio did not start in time")


def visitor(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)  # a session of its own, as a separate visitor has


def check_once(client, path: str, model: str) -> float:
    """Seconds from sending the check to having the report (the page's wait), for an open session."""
    from gradio_client import handle_file

    start = time.perf_counter()
    client.predict(handle_file(path), model, 4096, True, "", "", "", "", "", "", api_name="/check_file")
    return time.perf_counter() - start


def tokens_per_s(run: Path, since: float, until: float) -> float | None:
    """Median tokens/s of the steps the run logged between two wall-clock times."""
    try:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    speeds = [row["tokens_per_s"] for row in rows
              if row.get("tokens_per_s") and since <= row.get("time", 0) <= until]
    return statistics.median(speeds) if speeds else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--model", default="demo", help="whose tokenizer measures lengths (the Data tab's box)")
    parser.add_argument("--train", action="store_true", help="train the demo model during the test")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    clients = max(1, min(args.clients, MAX_CLIENTS))
    with tempfile.TemporaryDirectory(prefix="studio-load-") as scratch:
        scratch = Path(scratch)
        data = scratch / "checks.jsonl"
        write_rows(str(data), args.rows)
        server, url = start_server(scratch / "home", timeout=120)
        try:
            warm_up = scratch / "warm-up.jsonl"  # other bytes: the tokenizer and first imports, not a cached report
            write_rows(str(warm_up), 100)
            check_once(visitor(url), str(warm_up), args.model)
            alone = check_once(visitor(url), str(data), args.model)  # a real check: nobody has checked these bytes
            run = None
            if args.train:
                from gradio_client import Client

                from studio.config import SAMPLES_DIR

                Client(url, verbose=False).predict(str(SAMPLES_DIR / "demo-train.jsonl"), *DEMO_TRAIN_SETTINGS,
                                                   api_name="/start_training")
                time.sleep(15)
                run = max((scratch / "home" / "runs").iterdir(), key=lambda folder: folder.stat().st_mtime)
            burst_start = time.time()
            with ThreadPoolExecutor(clients) as pool:
                sessions = list(pool.map(lambda _: visitor(url), range(clients)))
                burst_start = time.time()
                futures = [pool.submit(check_once, session, str(data), args.model) for session in sessions]
                latencies = sorted(future.result(timeout=args.timeout) for future in futures)
            burst_end = time.time()
            p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
            result = {"rows": args.rows, "clients": clients, "model": args.model, "alone_s": round(alone, 2),
                      "p50_s": round(statistics.median(latencies), 2), "p95_s": round(p95, 2),
                      "max_s": round(latencies[-1], 2), "p95_over_alone": round(p95 / alone, 2)}
            if run is not None:
                idle = tokens_per_s(run, burst_start - 60, burst_start)
                busy = tokens_per_s(run, burst_start, burst_end)
                result.update(train_tokens_per_s_idle=idle, train_tokens_per_s_during=busy,
                              train_speed_kept=round(busy / idle, 2) if idle and busy else None)
            print(json.dumps(result))
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
