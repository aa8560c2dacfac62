"""Data tab: load a dataset, see what is wrong and where, fix, download; hands the cleaned set on."""

from __future__ import annotations

import gradio as gr

from studio.config import DEFAULT_LENGTH_MODEL, DEFAULT_MAX_LENGTH, KNOWN_MODELS, SAMPLE_DATASETS, SAMPLES_DIR
from studio.config import on_space
from studio.data import view as dataview
from studio.data.checks import FIXES
from studio.data.export import DEFAULT_EXPORT_STYLE, EXPORT_STYLES
from studio.data.mapping import FORMATS, MAPPING_KEYS
from studio.data.readers import looks_like_hub_id
from studio.data.validate import USER_FIXES, fix_and_save, mapping_text, validate
from studio.ui.layout import core_progress, intro, user_errors

DEFAULT_FIXES = ["convert_foreign", "repair_unopened", "drop_duplicates"]
MAPPING_FIELDS = ("prompt", "reasoning", "answer", "system", "turns")


@user_errors
def check(source, model, max_length, measure, form, *fields, progress=gr.Progress()):
    if not source:
        raise gr.Error("Choose a file to check: upload one, pick a sample, or type a Hub dataset id.")
    overrides = {"format": form, **dict(zip(MAPPING_FIELDS, fields))}
    report = validate(source, model=model, max_length=int(max_length), lengths=measure, overrides=overrides,
                      progress=core_progress(progress))
    return show(report, source)


def show(report, source):
    runner_up = report.dataset.alternatives[0] if report.dataset.alternatives else None
    histogram = dataview.histogram_frame(report)
    first_problem = report.issues[0].row if report.issues else report.dataset.records[0].number
    return (
        report,
        source,
        dataview.overview_markdown(report),
        dataview.summary_frame(report),
        gr.Dropdown(choices=dataview.code_choices(report), value=dataview.ALL_CODES),
        dataview.problem_frame(report),
        gr.BarPlot(value=histogram, sort=list(histogram["tokens"]), visible=report.lengths is not None),
        first_problem,
        dataview.row_preview_markdown(report, first_problem),
        gr.Group(visible=True),
        gr.Button(visible=runner_up is not None,
                  value=f"Use the runner-up mapping ({runner_up.format})" if runner_up else "Use the runner-up mapping"),
        gr.Button(visible=report.dataset.mapping is not None),
    )


@user_errors
def runner_up_fields(report):
    """The mapping boxes filled with the runner-up's fields; the page then checks again with them."""
    if report is None or not report.dataset.alternatives:
        raise gr.Error("No other mapping fits this file: set the fields by hand under Field mapping.")
    overrides = report.dataset.alternatives[0].to_overrides()
    form = overrides.get("format") or overrides.get("layout") or ""
    return [form, *(overrides.get(name, "") for name in MAPPING_FIELDS)]


@user_errors
def send_to_train(report, source):
    """The checked file as it is, with the mapping it was read with, for the Train tab."""
    if report is None or report.dataset.mapping is None:
        raise gr.Error("Check a dataset whose layout is known first.")
    gr.Info("The Train tab now trains on this file, read with this mapping (rows with errors are left out).")
    return {"path": source, "mapping": mapping_text(report.dataset.mapping.to_overrides())}


@user_errors
def apply(report, fixes, style, max_length):
    if report is None:
        raise gr.Error("Check a dataset first.")
    result, path = fix_and_save(report, set(fixes), style=style, max_length=int(max_length))
    changed = ", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in result.changed.items() if count)
    kept = len(result.dataset.records)
    left = result.report.summary
    message = (f"**Cleaned:** {kept:,} of {report.rows:,} rows kept ({changed or 'nothing to change'}). "
               f"Saved as `{path.name}` — the Train tab uses it by default. "
               + ("Remaining: " + ", ".join(f"{code} {count}" for code, count in left.items())
                  if left else "No issues remain."))
    return {"path": str(path), "mapping": ""}, gr.DownloadButton(value=str(path), visible=True), message


@user_errors
def check_typed_source(source, *settings, progress=gr.Progress()):
    """A Hub id, or on the studio's own machine also a file path (never on a public Space)."""
    source = (source or "").strip()
    if on_space() and source and not looks_like_hub_id(source):
        raise gr.Error("On a Space only Hub dataset ids (owner/name) can be typed here; upload files instead.")
    return check(source, *settings, progress=progress)


@user_errors
def preview_selected(report, event: gr.SelectData):
    row = event.row_value[0]
    return row, dataview.row_preview_markdown(report, row)


@user_errors
def filter_problems(report, code):
    return dataview.problem_frame(report, code) if report else None


@user_errors
def preview_row_markdown(report, row):
    if report is None:
        raise gr.Error("Check a dataset first: upload a file or pick a sample above.")
    return dataview.row_preview_markdown(report, row)


@user_errors
def pick_sample(name):
    return str(SAMPLES_DIR / name) if name else None


def build(cleaned_dataset: gr.State) -> None:
    """The Data tab's widgets; `cleaned_dataset` receives the path of the cleaned set."""
    report_state = gr.State(None)
    source_state = gr.State(None)
    intro("**Check your examples before training.** Upload a file (or pick a bundled sample): every row is checked "
          "for what breaks R1 fine-tunes, with the fix next to each problem. Then press **Apply fixes** — the "
          "cleaned file goes to the Train tab.", "data-intro")
    with gr.Row():
        with gr.Column(scale=2):
            upload = gr.File(label="Upload a dataset (.jsonl, .json, .csv, .parquet)", type="filepath",
                             file_types=[".jsonl", ".json", ".csv", ".parquet"], elem_id="data-upload")
            with gr.Row():
                sample = gr.Dropdown(choices=[(f"{name} — {about}", name) for name, about in SAMPLE_DATASETS.items()],
                                     value=None, label="…or a bundled sample", elem_id="data-sample",
                                     info="broken-sample.jsonl trips every check: a quick tour.")
                hub_id = gr.Textbox(label="…or a Hub dataset id" + ("" if on_space() else " (or a path on this machine)"),
                                    placeholder="owner/name[:split] — press Enter",
                                    info="Needs the network (or the dataset in the local cache).",
                                    elem_id="data-hub-id")
        with gr.Column(scale=1):
            model = gr.Dropdown(choices=list(KNOWN_MODELS), value=DEFAULT_LENGTH_MODEL, allow_custom_value=True,
                                label="Tokenizer of model", elem_id="data-model",
                                info="Lengths are counted with the tokenizer of the model you will train (a folder "
                                     "or Hub id works too); offline the R1-Distill vocabularies come with the studio.")
            max_length = gr.Number(value=DEFAULT_MAX_LENGTH, precision=0, minimum=1, label="max_length (tokens)",
                                   elem_id="data-max-length",
                                   info="R1 reasoning runs long: keep ≥ 4096 so the chain of thought is not cut.")
            measure = gr.Checkbox(value=True, label="Measure token lengths", elem_id="data-measure",
                                  info="Finds rows cut by max_length; slower on big files.")
            recheck = gr.Button("Check again", variant="primary", elem_id="data-check")
    with gr.Accordion("Field mapping (when the layout is not detected right)", open=False,
                      elem_id="data-mapping-accordion"):
        with gr.Row():
            form = gr.Dropdown(choices=[("detect", "")] + [(name, name) for name in FORMATS], value="",
                               label="layout", elem_id="data-format",
                               info="Leave on detect unless the overview names the wrong layout.")
            fields = [gr.Textbox(label=f"{name} field", placeholder="detected", elem_id=f"data-field-{name}",
                                 info=f"{MAPPING_KEYS.get(name, name).capitalize()}; blank: detected.")
                      for name in MAPPING_FIELDS]
    overview = gr.Markdown("**No dataset yet.** Upload a file above, or pick `broken-sample.jsonl` to see every "
                           "check at work. The report shows up here.", elem_id="data-overview")
    with gr.Row():
        use_runner_up = gr.Button("Use the runner-up mapping", visible=False, size="sm", elem_id="data-use-runner-up")
        train_as_is = gr.Button("Train on this file as mapped", visible=False, size="sm", elem_id="data-train-as-is")
    with gr.Group(visible=False) as results:
        summary = gr.Dataframe(headers=dataview.SUMMARY_COLUMNS, label="Issues by code", interactive=False,
                               wrap=True, elem_id="data-summary")
        histogram = gr.BarPlot(x="tokens", y="rows", color="fits", label="Token lengths (training text)",
                               x_title="tokens per row", y_title="rows", x_label_angle=-45, elem_id="data-histogram")
        with gr.Row():
            code_filter = gr.Dropdown(choices=[dataview.ALL_CODES], value=dataview.ALL_CODES,
                                      label="Show problem rows with", elem_id="data-code-filter",
                                      info="One code at a time, or all of them.")
        problems = gr.Dataframe(headers=dataview.PROBLEM_COLUMNS, label="Problem rows (select one to preview)",
                                interactive=False, wrap=True, max_height=400, elem_id="data-problems")
        with gr.Row():
            preview_row = gr.Number(label="Preview row", precision=0, elem_id="data-preview-row", scale=0,
                                    info="Type a row number and press Enter.")
            preview = gr.Markdown(elem_id="data-preview")
        with gr.Row():
            fixes = gr.CheckboxGroup(choices=[(FIXES[name], name) for name in USER_FIXES], value=DEFAULT_FIXES,
                                     label="Fixes", elem_id="data-fixes",
                                     info="Rows that still have an error after these are never written.")
            with gr.Column():
                style = gr.Radio(choices=list(EXPORT_STYLES), value=DEFAULT_EXPORT_STYLE, label="Export layout",
                                 elem_id="data-style", info="Both train the same; pick what your other tools read.")
                apply_button = gr.Button("Apply fixes", variant="primary", elem_id="data-apply")
                download = gr.DownloadButton("Download cleaned file", visible=False, elem_id="data-download")
        fix_status = gr.Markdown(elem_id="data-fix-status")

    settings = [model, max_length, measure, form, *fields]
    outputs = [report_state, source_state, overview, summary, code_filter, problems, histogram, preview_row,
               preview, results, use_runner_up, train_as_is]
    upload.upload(check, [upload, *settings], outputs, api_name="check_file")
    sample.input(pick_sample, sample, source_state, api_visibility="private").success(
        check, [source_state, *settings], outputs, api_visibility="private")
    hub_id.submit(check_typed_source, [hub_id, *settings], outputs, api_name="check_source")
    recheck.click(check, [source_state, *settings], outputs, api_visibility="private")
    code_filter.input(filter_problems, [report_state, code_filter], problems, api_name="filter_problems")
    problems.select(preview_selected, [report_state], [preview_row, preview], api_visibility="private")
    preview_row.submit(preview_row_markdown, [report_state, preview_row], preview, api_name="preview_row")
    apply_button.click(apply, [report_state, fixes, style, max_length], [cleaned_dataset, download, fix_status],
                       api_name="apply_fixes")
    use_runner_up.click(runner_up_fields, report_state, [form, *fields], api_name="runner_up_mapping").success(
        check, [source_state, *settings], outputs, api_visibility="private")
    train_as_is.click(send_to_train, [report_state, source_state], cleaned_dataset, api_name="train_as_mapped")
