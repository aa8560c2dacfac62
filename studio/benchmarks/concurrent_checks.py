"""A bounded load test: many visitors check a dataset in the Data tab at once, optionally while a run trains.

    python -m studio.benchmarks.concurrent_checks [--rows 5000] [--clients 20] [--model demo] [--train]

Starts the studio in a subprocess on 127.0.0.1 (a free port; nothing else is contacted), writes a JSONL file of
R1 rows, times one check alone, then `--clients` checks at once, each from a session of its own (its own
upload), and prints p50 / p95 / max against the lone call (target: p95 at most 3x). With `--train` a demo run
is started from the Train tab first and trains during the whole test (the lone call is then timed beside it
too), and its tokens/s alone and during the burst are compared (target: at least half). Bounded: at most 50 clients, every call and the whole test under `--timeout` seconds.
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
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from studio.benchmarks.checks_speed import write_rows

MAX_CLIENTS = 50
IDLE_WINDOW_S = 10.0  # the run's speed with nothing else going, over this long
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


class Visitor:
    """One browser session, as the page talks to the server (upload, join the queue, read the event stream),
    over plain HTTP: gradio_client costs the machine more CPU per call than the studio's own answer (a new HTTP
    client per call, its stream buffer copied per chunk), and here the load generator shares the cores with the
    studio and its training; a visitor's browser would not."""

    def __init__(self, url: str, http: httpx.Client, fn_index: int):
        self.url, self.http, self.fn_index = url, http, fn_index
        self.session_hash = uuid.uuid4().hex

    def check(self, path: str, model: str) -> float:
        """Seconds from sending the file to having the report (the page's wait)."""
        start = time.perf_counter()
        with open(path, "rb") as handle:
            uploaded = self.http.post(f"{self.url}gradio_api/upload", files=[("files", (Path(path).name, handle))])
        uploaded.raise_for_status()
        file = {"path": uploaded.json()[0], "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}
        payload = {"data": [file, model, 4096, True, "", "", "", "", "", ""], "fn_index": self.fn_index,
                   "session_hash": self.session_hash, "event_data": None, "trigger_id": None}
        joined = self.http.post(f"{self.url}gradio_api/queue/join", json=payload)
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        with self.http.stream("GET", f"{self.url}gradio_api/queue/data",
                              params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(f"the check failed: {message.get('output')}")
                    return time.perf_counter() - start
        raise RuntimeError("the event stream ended before the report")


def check_endpoint(url: str, http: httpx.Client) -> int:
    config = http.get(f"{url}config").json()
    for index, dependency in enumerate(config["dependencies"]):
        if dependency.get("api_name") == "check_file":
            return dependency.get("id", index)
    raise RuntimeError("the studio has no check_file endpoint")


def start_training(url: str, runs: Path, timeout: float) -> Path:
    """Start a demo run from the Train tab (as a visitor would) and wait for its first logged steps."""
    from gradio_client import Client

    from studio.config import SAMPLES_DIR

    Client(url, verbose=False).predict(str(SAMPLES_DIR / "demo-train.jsonl"), *DEMO_TRAIN_SETTINGS,
                                       api_name="/start_training")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folders = list(runs.iterdir()) if runs.is_dir() else []
        if folders and (folders[0] / "metrics.jsonl").exists():
            time.sleep(3)  # past the first steps' warm-up
            return folders[0]
        time.sleep(0.5)
    raise RuntimeError("the demo run logged no step in time")


def stop_training(url: str, runs: Path, timeout: float = 120) -> None:
    from gradio_client import Client

    from studio.runs import find_running

    try:
        Client(url, verbose=False).predict(api_name="/stop_training")
    except Exception:  # the server is gone: stop the run through its folder
        running = find_running(runs)
        if running:
            running.request_stop()
    deadline = time.monotonic() + timeout
    while find_running(runs) is not None and time.monotonic() < deadline:
        time.sleep(0.5)


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
    parser.add_argument("--distinct", action="store_true",
                        help="each visitor checks a file of its own (other bytes: no check is shared)")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    clients = max(1, min(args.clients, MAX_CLIENTS))
    with tempfile.TemporaryDirectory(prefix="studio-load-") as scratch:
        scratch = Path(scratch)
        data = scratch / "checks.jsonl"
        write_rows(str(data), args.rows)
        server, url = start_server(scratch / "home", timeout=120)
        try:
            run = idle = None
            if args.train:  # first, so that the lone check and the burst are timed under the same load
                run = start_training(url, scratch / "home" / "runs", args.timeout)
                idle_from = time.time()
                time.sleep(IDLE_WINDOW_S)  # nothing else runs: the run's own speed
                idle = tokens_per_s(run, idle_from, time.time())
            http = httpx.Client(timeout=args.timeout, limits=httpx.Limits(max_connections=2 * clients + 4))
            fn_index = check_endpoint(url, http)
            warm_up = scratch / "warm-up.jsonl"  # other bytes: the tokenizer and first imports, not a cached report
            write_rows(str(warm_up), 100)
            Visitor(url, http, fn_index).check(str(warm_up), args.model)
            alone = Visitor(url, http, fn_index).check(str(data), args.model)  # nobody has checked these bytes
            files = [str(data)] * clients
            if args.distinct:  # one row more each: other bytes, so twenty checks, as twenty different uploads are
                files = [str(scratch / f"visitor-{index}.jsonl") for index in range(clients)]
                for index, path in enumerate(files):
                    row = {"prompt": f"visitor {index}", "response": "<think>\nok\n</think>\n\nok"}
                    Path(path).write_bytes(data.read_bytes() + json.dumps(row).encode() + b"\n")
            sessions = [Visitor(url, http, fn_index) for _ in range(clients)]
            with ThreadPoolExecutor(clients) as pool:
                burst_start = time.time()
                futures = [pool.submit(session.check, path, args.model) for session, path in zip(sessions, files)]
                latencies = sorted(future.result(timeout=args.timeout) for future in futures)
            burst_end = time.time()
            p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
            result = {"rows": args.rows, "clients": clients, "model": args.model, "distinct_files": args.distinct,
                      "alone_s": round(alone, 2),
                      "p50_s": round(statistics.median(latencies), 2), "p95_s": round(p95, 2),
                      "max_s": round(latencies[-1], 2), "p95_over_alone": round(p95 / alone, 2)}
            if run is not None:
                busy = tokens_per_s(run, burst_start, burst_end)
                result.update(train_tokens_per_s_idle=idle, train_tokens_per_s_during=busy,
                              train_speed_kept=round(busy / idle, 2) if idle and busy else None)
            print(json.dumps(result))
        finally:
            if args.train:  # the run trains in a process of its own, which outlives the server: stop it first
                stop_training(url, scratch / "home" / "runs")
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
