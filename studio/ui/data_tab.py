"""Data tab: load a dataset, see what is wrong and where, fix, download; hands the cleaned set on.

The report a check makes is kept server-side per browser session (spaces.visitors: a cache bounded in count and
time, freed when the tab closes); the page holds no copy of it.
"""

from __future__ import annotations

import time

import gradio as gr

from studio import spaces
from studio.config import DEFAULT_LENGTH_MODEL, KNOWN_MODELS, SAMPLE_DATASETS, SAMPLES_DIR
from studio.data import check_cache
from studio.data import view as dataview
from studio.data.checks import FIXES
from studio.data.export import DEFAULT_EXPORT_STYLE, EXPORT_STYLES, style_for, style_note
from studio.data.mapping import FORMATS, MAPPING_KEYS
from studio.data.validate import (
    USER_FIXES, cleaned_sets, fix_and_save, fixes_possible, mapping_text, training_max_length,
)
from studio.models import typed_name
from studio.ui.layout import core_progress, intro, session_of, user_errors

# A row cut inside its reasoning trains the model to stop thinking mid-way and never answer: dropped by default.
DEFAULT_FIXES = ["convert_foreign", "repair_unopened", "drop_duplicates", "drop_cut_reasoning"]
FIRST_SAMPLE = next(iter(SAMPLE_DATASETS))  # preselected, so that Check dataset has something to check
# Checks of different sessions run side by side (Gradio runs one call of an event at a time unless told); the same
# file checked by several at once is done once (studio.data.check_cache). More would only split the same cores.
CHECKS_AT_ONCE = 4
MAPPING_FIELDS = ("prompt", "reasoning", "answer", "system", "turns")
NO_DATASET = ("**No dataset yet.** Press **Check dataset** to check the selected sample, upload a file above, or "
              "pick `broken-sample.jsonl` to see every check at work. The report shows up here.")
CHECKING = "**Checking…** The report shows up here."
CHECK_FAILED = ("**No report:** that file could not be checked (the message says why). Upload another file, pick a "
                "sample, or fix the file and upload it again.")
CHECK_FIRST = "Check a dataset first: upload a file, pick a sample or type a Hub dataset id above."


def current_report(request: gr.Request):
    """This session's report; a gr.Error that says what to do when there is none (never checked, or let go)."""
    key = session_of(request)
    report = spaces.visitors().report(key)
    if report is not None:
        return report
    why = spaces.visitors().let_go(key)
    if why == "idle":
        raise gr.Error(f"This page's report was let go after {spaces.session_ttl_s() // 60} idle minutes to free "
                       "memory: check the file again (upload it, or press Check again).")
    if why == "memory":
        raise gr.Error("This page's report was let go to free memory (other pages checked files since): check the "
                       "file again (upload it, or press Check again).")
    if why == "closed":
        raise gr.Error("This page's report was let go when its connection to the studio closed: check the file "
                       "again (upload it, or press Check again).")
    raise gr.Error(CHECK_FIRST)


@user_errors
def check(source, model, max_length, measure, form, prompt, reasoning, answer, system, turns,
          request: gr.Request, progress=gr.Progress()):
    key = session_of(request)
    spaces.visitors().drop_report(key)  # first: a failed check leaves no old report, and two are never held
    if not source:
        raise gr.Error("Choose a file to check: upload one, pick a sample, or type a Hub dataset id.")
    fields = (prompt, reasoning, answer, system, turns)
    overrides = {"format": form, **dict(zip(MAPPING_FIELDS, fields))}
    report = check_cache.shared().validate(source, model=typed_name(model, "tokenizer model") or None,
                                           max_length=int(max_length), lengths=measure, overrides=overrides,
                                           progress=core_progress(progress))
    spaces.visitors().keep_report(key, report)
    return show(report, source)


def show(report, source):
    runner_up = report.dataset.alternatives[0] if report.dataset.alternatives else None
    histogram, bin_width = dataview.histogram_frame(report)
    first_problem = report.issues[0].row if report.issues else report.dataset.records[0].number
    return (
        source,
        dataview.overview_markdown(report),
        dataview.summary_frame(report),
        gr.Dropdown(choices=dataview.code_choices(report), value=dataview.ALL_CODES),
        dataview.problem_frame(report),
        gr.BarPlot(value=histogram, x_bin=bin_width, label=dataview.histogram_label(report),
                   visible=report.lengths is not None),
        first_problem,
        dataview.row_preview_markdown(report, first_problem),
        gr.Group(visible=True),
        gr.Button(visible=runner_up is not None,
                  value=f"Use the runner-up mapping ({runner_up.format})" if runner_up else "Use the runner-up mapping"),
        gr.Button(visible=report.dataset.mapping is not None),
        gr.Radio(value=style_for(report.dataset.format), info=style_note(report.dataset.format)),
        gr.Button(value="Check again"),
    )


@user_errors
def start_check(request: gr.Request):
    """Before a check: the old report goes (in memory and on the page), so a failed check never leaves it behind."""
    spaces.visitors().drop_report(session_of(request))
    return (CHECKING, None, gr.Dropdown(choices=[dataview.ALL_CODES], value=dataview.ALL_CODES), None,
            gr.BarPlot(value=None, visible=False), None, "", gr.Group(visible=False), gr.Button(visible=False),
            gr.Button(visible=False), gr.DownloadButton(value=None, visible=False), "")


@user_errors
def start_upload_check(path, request: gr.Request):
    """An upload is the page's file from now on, even if it fails to check: Check again checks it, not the last."""
    return (path, *start_check(request))


@user_errors
def start_typed_check(request: gr.Request):
    """A typed name becomes the page's source only once it checks (it is vetted first): until then, none."""
    return (None, *start_check(request))


@user_errors
def check_failed():
    return CHECK_FAILED


@user_errors
def forget_session(request: gr.Request):
    """The tab closed: its report is freed now."""
    spaces.visitors().forget(session_of(request))


@user_errors
def runner_up_fields(request: gr.Request):
    """The mapping boxes filled with the runner-up's fields; the page then checks again with them."""
    report = current_report(request)
    if not report.dataset.alternatives:
        raise gr.Error("No other mapping fits this file: set the fields by hand under Field mapping.")
    overrides = report.dataset.alternatives[0].to_overrides()
    form = overrides.get("format") or overrides.get("layout") or ""
    return [form, *(overrides.get(name, "") for name in MAPPING_FIELDS)]


@user_errors
def send_to_train(source, request: gr.Request):
    """The checked file as it is, with the mapping it was read with, for the Train tab."""
    report = current_report(request)
    if report.dataset.mapping is None:
        raise gr.Error("Check a dataset whose layout is known first.")
    gr.Info("The Train tab now trains on this file, read with this mapping (rows with errors are left out).")
    return {"path": source, "mapping": mapping_text(report.dataset.mapping.to_overrides())}


@user_errors
def apply(fixes, style, max_length, request: gr.Request):
    report = current_report(request)
    # On a shared server the cleaned set goes to this session's own folder, handed out only through the download.
    folder = spaces.visitors().folder(session_of(request)) if spaces.multiuser() else None
    fixes, skipped = fixes_possible(report, fixes)
    result, path = fix_and_save(report, fixes, style=style, max_length=int(max_length), folder=folder)
    changed = ", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in result.changed.items() if count)
    kept = len(result.dataset.records)
    left = result.report.summary
    message = (f"**Cleaned:** {kept:,} of {report.rows:,} rows kept ({changed or 'nothing to change'}). "
               f"Saved as `{path.name}` in the `{style}` layout — the Train tab uses it by default. "
               + ("Remaining: " + ", ".join(f"{code} {count}" for code, count in left.items())
                  if left else "No issues remain."))
    if skipped:
        message += (f" Not applied: {', '.join(name.replace('_', ' ') for name in skipped)} — the lengths were not "
                    "measured; tick Measure token lengths and check again to find the rows max_length cuts.")
    return {"path": str(path), "mapping": ""}, gr.DownloadButton(value=str(path), visible=True), message


@user_errors
def no_note():
    """The line about the latest cleaned set goes once this page has cleaned one of its own (it says so itself)."""
    return ""


@user_errors
def latest_cleaned():
    """On a page load: the newest cleaned set, back in the Train tab's hands (it was only in the page that made
    it), and a line saying so. None on a shared server, where each page's cleaned sets are its own."""
    found = [] if spaces.multiuser() else cleaned_sets()
    if not found:
        return None, ""
    path = found[0]
    saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    return {"path": str(path), "mapping": ""}, (
        f"**The Train tab trains on your latest cleaned set,** `{path.name}` (saved {saved}). Check a file and "
        "apply fixes to replace it, or type another dataset in the Train tab.")


@user_errors
def max_length_for_model(model):
    """The max_length the Train tab's preset trains `model` at: the rows called cut here are the rows it cuts."""
    return training_max_length(typed_name(model, "tokenizer model"))


@user_errors
def check_typed_source(source, model, max_length, measure, form, prompt, reasoning, answer, system, turns,
                       request: gr.Request, progress=gr.Progress()):
    """A Hub id, or on the studio's own machine also a file path (never on a Space or another shared server).

    A name with a `..` step is never read, in any mode; on a shared server only a name that is a Hub id and
    nothing else (no file suffix in any case, nothing of that name on the server) is taken.
    """
    source = (source or "").strip()
    if source and ".." in source.replace("\\", "/").split("/"):
        raise gr.Error("Paths with a `..` step are not read: type a Hub dataset id (owner/name)"
                       + ("." if spaces.multiuser() else ", or the file's full path."))
    if spaces.multiuser() and source and not spaces.hub_id_only(source):
        raise gr.Error("On this shared studio only Hub dataset ids (owner/name) can be typed here; upload files "
                       "instead.")
    return check(source, model, max_length, measure, form, prompt, reasoning, answer, system, turns, request=request,
                 progress=progress)


@user_errors
def preview_selected(event: gr.SelectData, request: gr.Request):
    row = event.row_value[0]
    return row, dataview.row_preview_markdown(current_report(request), row)


@user_errors
def filter_problems(code, request: gr.Request):
    report = spaces.visitors().report(session_of(request))
    return dataview.problem_frame(report, code) if report else None


@user_errors
def preview_row_markdown(row, request: gr.Request):
    return dataview.row_preview_markdown(current_report(request), row)


@user_errors
def pick_sample(name):
    return str(SAMPLES_DIR / name) if name else None


@user_errors
def follow_value(value):
    """The Train tab's value, for the Data tab's box; a cleared Train box leaves the Data tab's as it is."""
    return gr.skip() if value in (None, "") else value


def follow_training(boxes: tuple[gr.Dropdown, gr.Number], train_model: gr.Dropdown, train_max_length: gr.Number):
    """The Data tab's tokenizer model and max_length follow the Train tab's base model and max length (a preset
    sets it), so that the check measures what the run will train."""
    model, max_length = boxes
    train_model.change(follow_value, train_model, model, api_visibility="private", show_progress="hidden")
    train_max_length.change(follow_value, train_max_length, max_length, api_visibility="private",
                            show_progress="hidden")


def build(app: gr.Blocks, cleaned_dataset: gr.State) -> tuple[gr.Dropdown, gr.Number]:
    """The Data tab's widgets; `cleaned_dataset` receives the path of the cleaned set. Returns the tokenizer model
    and max_length boxes, for the page to keep them in step with the Train tab's model and max length."""
    source_state = gr.State(str(SAMPLES_DIR / FIRST_SAMPLE))
    intro("**Check your examples before training.** Upload a file (or pick a bundled sample): every row is checked "
          "for what breaks R1 fine-tunes, with the fix next to each problem. Then press **Apply fixes** — the "
          "cleaned file goes to the Train tab.", "data-intro")
    with gr.Row():
        with gr.Column(scale=2):
            upload = gr.File(label="Upload a dataset (.jsonl, .json, .csv, .parquet)", type="filepath",
                             file_types=[".jsonl", ".json", ".csv", ".parquet"], elem_id="data-upload")
            with gr.Row():
                sample = gr.Dropdown(choices=[(f"{name} — {about}", name) for name, about in SAMPLE_DATASETS.items()],
                                     value=FIRST_SAMPLE, label="…or a bundled sample", elem_id="data-sample",
                                     info="broken-sample.jsonl trips every check: a quick tour.")
                hub_id = gr.Textbox(label="…or a Hub dataset id" + ("" if spaces.multiuser() else
                                                                    " (or a path on this machine)"),
                                    placeholder="owner/name[:split] — press Enter",
                                    info="Needs the network (or the dataset in the local cache).",
                                    elem_id="data-hub-id")
        with gr.Column(scale=1):
            model = gr.Dropdown(choices=list(KNOWN_MODELS), value=DEFAULT_LENGTH_MODEL, allow_custom_value=True,
                                label="Tokenizer of model", elem_id="data-model",
                                info="Lengths are counted with the tokenizer of the model you will train (a folder "
                                     "or Hub id works too); offline the R1-Distill vocabularies come with the studio.")
            max_length = gr.Number(value=training_max_length(DEFAULT_LENGTH_MODEL), precision=0, minimum=1,
                                   label="max_length (tokens)", elem_id="data-max-length",
                                   info="What training cuts rows at: follows the model (and the Train tab's max "
                                        "length). R1 reasoning runs long: keep ≥ 4096 for a real R1 base.")
            measure = gr.Checkbox(value=True, label="Measure token lengths", elem_id="data-measure",
                                  info="Finds rows cut by max_length; slower on big files.")
            recheck = gr.Button("Check dataset", variant="primary", elem_id="data-check")
    with gr.Accordion("Field mapping (when the layout is not detected right)", open=False,
                      elem_id="data-mapping-accordion"):
        with gr.Row():
            form = gr.Dropdown(choices=[("detect", "")] + [(name, name) for name in FORMATS], value="",
                               label="layout", elem_id="data-format",
                               info="Leave on detect unless the overview names the wrong layout.")
            fields = [gr.Textbox(label=f"{name} field", placeholder="detected", elem_id=f"data-field-{name}",
                                 info=f"{MAPPING_KEYS.get(name, name).capitalize()}; blank: detected.")
                      for name in MAPPING_FIELDS]
    cleaned_note = gr.Markdown(elem_id="data-cleaned-note")
    overview = gr.Markdown(NO_DATASET, elem_id="data-overview")
    with gr.Row():
        use_runner_up = gr.Button("Use the runner-up mapping", visible=False, size="sm", elem_id="data-use-runner-up")
        train_as_is = gr.Button("Train on this file as mapped", visible=False, size="sm", elem_id="data-train-as-is")
    with gr.Group(visible=False) as results:
        # Every code on screen at once (at most one row each): no scroll of its own.
        summary = gr.Dataframe(headers=dataview.SUMMARY_COLUMNS, label="Issues by code", interactive=False,
                               wrap=True, column_widths=dataview.SUMMARY_WIDTHS, max_height=4000,
                               elem_id="data-summary", elem_classes="studio-table")
        histogram = gr.BarPlot(x="tokens", y="rows", color="fits", label="Token lengths (training text)",
                               x_title="tokens per row", y_title="rows", y_aggregate="sum", x_label_angle=-90,
                               x_axis_format="~s",
                               color_map=dataview.HISTOGRAM_COLORS, elem_id="data-histogram")
        with gr.Row():
            code_filter = gr.Dropdown(choices=[dataview.ALL_CODES], value=dataview.ALL_CODES,
                                      label="Show problem rows with", elem_id="data-code-filter",
                                      info="One code at a time, or all of them.")
        problems = gr.Dataframe(headers=dataview.PROBLEM_COLUMNS, label="Problem rows (select one to preview)",
                                interactive=False, wrap=True, column_widths=dataview.PROBLEM_WIDTHS, max_height=400,
                                elem_id="data-problems", elem_classes="studio-table")
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
                                 elem_id="data-style", info="Your file's layout is kept where the export writes it; "
                                                            "both train the same.")
                apply_button = gr.Button("Apply fixes", variant="primary", elem_id="data-apply")
                download = gr.DownloadButton("Download cleaned file", visible=False, elem_id="data-download")
        fix_status = gr.Markdown(elem_id="data-fix-status")

    settings = [model, max_length, measure, form, *fields]
    outputs = [source_state, overview, summary, code_filter, problems, histogram, preview_row, preview, results,
               use_runner_up, train_as_is, style, recheck]
    cleared = [overview, summary, code_filter, problems, histogram, preview_row, preview, results, use_runner_up,
               train_as_is, download, fix_status]

    def checked(event, function, inputs, start=(start_check, None, cleared), **api):
        """Clear the old report from the page and memory, then check; a failed check says so in the overview."""
        event(*start, api_visibility="private", show_progress="hidden").then(
            function, inputs, outputs, concurrency_id="data-check", concurrency_limit=CHECKS_AT_ONCE, **api).failure(
            check_failed, None, overview, api_visibility="private")

    checked(upload.upload, check, [upload, *settings], start=(start_upload_check, upload, [source_state, *cleared]),
            api_name="check_file")
    checked(sample.input(pick_sample, sample, source_state, api_visibility="private").success, check,
            [source_state, *settings], api_visibility="private")
    checked(hub_id.submit, check_typed_source, [hub_id, *settings], start=(start_typed_check, None,
                                                                           [source_state, *cleared]),
            api_name="check_source")
    checked(recheck.click, check, [source_state, *settings], api_visibility="private")
    code_filter.input(filter_problems, code_filter, problems, api_name="filter_problems")
    problems.select(preview_selected, None, [preview_row, preview], api_visibility="private")
    preview_row.submit(preview_row_markdown, preview_row, preview, api_name="preview_row")
    apply_button.click(apply, [fixes, style, max_length], [cleaned_dataset, download, fix_status],
                       api_name="apply_fixes").success(no_note, None, cleaned_note, api_visibility="private")
    model.input(max_length_for_model, model, max_length, api_visibility="private", show_progress="hidden")
    app.load(latest_cleaned, None, [cleaned_dataset, cleaned_note], api_visibility="private")
    checked(use_runner_up.click(runner_up_fields, None, [form, *fields], api_name="runner_up_mapping").success, check,
            [source_state, *settings], api_visibility="private")
    train_as_is.click(send_to_train, source_state, cleaned_dataset, api_name="train_as_mapped")
    return model, max_length
