"""`python -m studio bench` on CPU with the demo model: the studio's own training path, reported as JSON or a table."""

import json
import subprocess
import sys

import pytest

from studio.train.bench import step_rates
from studio.config import PROJECT_ROOT


def bench(*args):
    return subprocess.run([sys.executable, "-m", "studio", "bench", "--model", "demo", "--seq", "96", "--steps", "3",
                           *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("data, checkpointing, recorded", [("fixed", "offload", (True, True)),
                                                           ("mix", "auto", (None, None)),
                                                           ("vary", "off", (False, False))])
def test_bench_reports_speed_and_losses_as_json(data, checkpointing, recorded):
    extra = ["--packing", "--batch-size", "4"] if data == "mix" else []
    result = bench("--data", data, "--json", "--checkpointing", checkpointing, *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["data"] == data and row["method"] == "lora" and row["steps"] == 3
    assert row["tokens_per_s"] > 0 and row["first_loss"] > 0
    import torch

    assert (row["peak_gib"] is None) == (not torch.cuda.is_available())  # GPU memory only where there is a GPU
    assert torch.cuda.is_available() or row["ceiling_fraction"] is None  # no compute ceiling for a CPU
    assert row["settings"]["fused_lora"] is True and row["settings"]["packing"] == (data == "mix")
    settings = row["settings"]
    assert (settings["gradient_checkpointing"], settings["offload_checkpoints"]) == recorded


def test_bench_table_and_profile(tmp_path):
    result = bench("--profile", str(tmp_path / "profile"), "--steps", "4", "--no-fused-lora")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("| config | method | data | tokens/s |")
    for name in ("profile.txt", "profile_host.txt", "profile_by_op.txt"):
        assert "Self CPU" in (tmp_path / "profile" / name).read_text()
    assert "FusedLoraLinear" not in (tmp_path / "profile" / "profile_host.txt").read_text()


def test_bench_names_a_model_it_cannot_find():
    result = bench("--model", "/nowhere/model", "--json")
    assert result.returncode != 0
    assert "/nowhere/model" in json.loads(result.stdout.strip().splitlines()[-1])["error"]


def test_step_rates_use_the_token_count_between_log_rows():
    rows = [{"loss": 1.0, "tokens_seen": 100, "time": 10.0}, {"loss": 0.9, "tokens_seen": 300, "time": 10.5},
            {"eval_loss": 1.0, "time": 11.0}, {"loss": 0.8, "tokens_seen": 500, "time": 11.5}]
    assert step_rates(rows) == [400.0, 200.0]


def test_lora_host_overhead_benchmark_reports_both_paths(capsys):
    from studio.benchmarks import lora_host_overhead

    lora_host_overhead.main(["--calls", "2", "--autocast"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["peft", "fused"]
    assert all(float(line.split()[1]) > 0 for line in lines)
