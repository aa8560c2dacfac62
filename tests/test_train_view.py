"""What the Train tab shows, from metrics rows and run folders alone: plots, ETA, status after a restart, eval
split, the preset's words."""

import pytest

from studio.train import view
from studio.train.job import (DEMO_PRESET, EVAL_SPLIT_MAX_ROWS, EVAL_SPLIT_MIN_ROWS, LORA_LR, PRESETS, QLORA_LR,
                              held_out_rows)


def rows_at(seconds_per_step, first_step_s, steps):
    """Synthetic metrics rows of one process: the first step takes `first_step_s` (loading, warm-up), each later
    one `seconds_per_step`; the clock starts when training begins."""
    rows, now = [], first_step_s
    for step in range(1, steps + 1):
        rows.append({"step": step, "time": now, "loss": 1.0 / step})
        now += seconds_per_step
    return rows


# --- ETA ----------------------------------------------------------------------------------------------


def test_the_eta_follows_the_settled_rate_not_the_first_step():
    rows = rows_at(0.6, first_step_s=9.0, steps=5)  # a 0.6 s/step run whose first step took 9 s
    assert view.eta_seconds(rows[:1], 156) is None  # one step: no rate yet (its 9 s are not one)
    assert view.eta_seconds(rows, 156) == pytest.approx(0.6 * 151, rel=0.01)  # ≈ 1.5 min, not 9 × 151 s


def test_the_eta_follows_a_change_of_rate_within_its_window():
    rows = rows_at(2.0, first_step_s=1.0, steps=40)
    for row in rows[20:]:  # from step 21 each step takes 0.5 s instead of 2 s
        row["time"] = rows[19]["time"] + 0.5 * (row["step"] - 20)
    assert view.eta_seconds(rows, 100, window=10) == pytest.approx(0.5 * 60)


def test_the_eta_is_zero_at_the_end_and_the_progress_line_says_when_it_has_none():
    rows = rows_at(0.6, first_step_s=3.0, steps=4)
    assert view.eta_seconds(rows, 4) == 0.0
    assert view.eta_seconds(rows[:1], 1) == 0.0  # a one-step run is done after its step
    line = view.progress_html({"state": "running", "step": 1, "max_steps": 156, "eta_s": None})
    assert "ETA after a few steps" in line


# --- Plots --------------------------------------------------------------------------------------------


def test_an_empty_plot_says_what_will_appear():
    update = view.plot_update(view.loss_frame([]), "loss")
    assert update["value"] is None
    assert "The loss appears here after the first logged step" in update["label"]
    for plot in ("learning_rate", "tokens_per_s"):
        assert "appears here after the first logged step" in view.empty_plot_label(plot)


def test_a_one_point_plot_gets_axes_around_its_point():
    metrics = [{"step": 1, "loss": 0.750572, "learning_rate": 2e-3, "tokens_per_s": 330.6}]
    loss = view.plot_update(view.loss_frame(metrics), "loss")
    assert loss["y_lim"] == pytest.approx([0.0, 1.501144]) and loss["x_lim"] == [0, 10]
    speed = view.plot_update(view.series_frame(metrics, "tokens_per_s"), "tokens_per_s")
    assert speed["y_lim"] == pytest.approx([0.0, 661.2])
    many = [{"step": step, "loss": 1.0 / step} for step in range(1, 5)]
    curve = view.plot_update(view.loss_frame(many), "loss")
    assert curve["y_lim"] is None and curve["x_lim"] is None  # a curve keeps the plot's own axes
    assert curve["label"] == "Loss"


def test_plot_axes_are_titled_in_words_with_units():
    titles = {plot: view.PLOTS[plot][1] for plot in view.PLOTS}
    assert titles["tokens_per_s"] == "Tokens per second"
    assert "nats per token" in titles["loss"] and titles["learning_rate"] == "Learning rate"
    assert not any("_" in title for title in titles.values())


# --- Status -------------------------------------------------------------------------------------------


def test_a_finished_run_points_to_the_chat_tab():
    text = view.status_markdown({"state": "completed", "message": "Finished 156 steps; adapter saved."}, "demo-run")
    assert "**3. Chat**" in text and "demo-run" in text


def test_after_a_restart_the_status_names_the_last_run_its_state_and_where_it_stopped():
    text = view.status_markdown({"state": "interrupted", "step": 40, "max_steps": 156, "message": "Training",
                                 "last_run": True}, "demo-lora-20261201")
    assert text.startswith("⚠️ Last run **demo-lora-20261201** — interrupted at step 40 of 156")
    assert "Resume" in text


def test_the_status_says_why_there_is_no_eval_split():
    from studio.train.job import eval_split_words

    data = {"train_rows": 600, "eval_rows": 0, "rows_left_out": 0, "rows_truncated": 0,
            "eval_words": eval_split_words(None, 600, 0)}
    text = view.status_markdown({"state": "running", "message": "Training", "data": data}, "run")
    assert f"a set under {EVAL_SPLIT_MIN_ROWS:,} rows keeps every row for training" in text


# --- Eval split ---------------------------------------------------------------------------------------


def test_the_eval_split_is_on_by_default_for_large_sets_only():
    assert held_out_rows(None, 600) == 0  # the demo set
    assert held_out_rows(None, EVAL_SPLIT_MIN_ROWS) == EVAL_SPLIT_MIN_ROWS // 20  # 5 %
    assert held_out_rows(None, 100_000) == EVAL_SPLIT_MAX_ROWS  # capped
    assert held_out_rows(0.0, 100_000) == 0 and held_out_rows(0.1, 1000) == 100  # what was asked for


def test_a_large_set_holds_out_rows_and_plots_an_eval_loss(tmp_path, demo_tokenizer):
    import json

    from studio.config import SAMPLES_DIR
    from studio.train.job import default_config, prepare_data

    rows = (SAMPLES_DIR / "demo-train.jsonl").read_text(encoding="utf-8").splitlines()
    big = tmp_path / "big.jsonl"
    big.write_text("\n".join(rows * (EVAL_SPLIT_MIN_ROWS // len(rows) + 1)) + "\n", encoding="utf-8")
    config = default_config(str(big), str(tmp_path / "run"), model="demo")
    assert config.eval_split is None  # auto by default
    data = prepare_data(config, demo_tokenizer)
    assert len(data.eval) == held_out_rows(None, len(data.train) + len(data.eval)) > 0
    small = prepare_data(default_config(str(SAMPLES_DIR / "demo-train.jsonl"), str(tmp_path / "demo")),
                         demo_tokenizer)
    assert len(small.eval) == 0
    frame = view.loss_frame([{"step": 1, "loss": 0.7}, {"step": 1, "eval_loss": 0.8}])
    assert set(frame["series"]) == {"loss", "eval loss"}
    json.dumps(config.to_json())  # None (auto) is written into config.json and read back
    assert type(config).from_json(json.loads(json.dumps(config.to_json()))).eval_split is None


# --- The preset's words -------------------------------------------------------------------------------


def test_the_help_beside_the_demo_preset_names_its_values_and_the_real_defaults():
    from studio.config import DEFAULT_MAX_LENGTH
    from studio.ui.train_tab import HELP, preset_note

    demo = PRESETS[DEMO_PRESET]
    note = preset_note(DEMO_PRESET)
    assert "format, not arithmetic" in note and "</think>" in note and "\\boxed" in note
    for text in (HELP["learning_rate"], note):
        assert f"{demo['learning_rate']:g}" in text and "demo model" in text
        assert "1e-4" in text and "2e-4" in text and (LORA_LR, QLORA_LR) == (1e-4, 2e-4)
    for text in (HELP["max_length"], note):
        assert str(demo["max_length"]) in text and str(DEFAULT_MAX_LENGTH) in text
    assert "bf16" in note and "bf16" in HELP["preset"]


def test_the_eval_split_box_reads_auto_none_or_a_fraction():
    from studio.ui.train_tab import eval_fraction

    assert eval_fraction("auto") is None and eval_fraction(None) is None and eval_fraction("") is None
    assert eval_fraction("0") == 0.0 and eval_fraction(0.1) == 0.1 and eval_fraction("0.05") == 0.05
    with pytest.raises(ValueError, match="Eval split 'five' is not a fraction"):
        eval_fraction("five")
