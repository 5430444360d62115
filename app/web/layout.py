"""The page: header, Create / History / Models tabs, and the wiring of components to `WebApp` handlers.

    from app.web.layout import build
    demo = build(web_app)        # a gr.Blocks; `vqclip serve` launches it
"""
from __future__ import annotations

import random

import gradio as gr

from app.web import form, models, results
from app.web.handlers import WebApp
from app.web.jobs_view import job_card
from generator.shapes.advice import DEMO_VQGAN, EXAMPLE as DEMO_EXAMPLE

POLL_SECONDS = 2.0
PRIVATE = dict(api_visibility="private")


def build(app: WebApp) -> gr.Blocks:
    vqgan, clip, real = models.default_pair()
    start = form.defaults(vqgan, clip, real)
    with gr.Blocks(title="vqclip · VQGAN+CLIP") as demo:
        session = gr.BrowserState(None, storage_key="vqclip-session")
        current, shown, history_key = gr.State(None), gr.State(""), gr.State("")
        init_name, prompt_names, history_ids, selected = gr.State(None), gr.State([]), gr.State([]), gr.State(None)
        group = gr.BrowserState([], storage_key="vqclip-group")  # job ids of the latest Generate
        tile_ids, group_key, picked = gr.State([]), gr.State(""), gr.State(None)

        with gr.Row(elem_id="vq-header"):
            gr.HTML('<div class="vq-brand"><span class="vq-logo">◆</span> vqclip'
                    '<span class="vq-tagline">text to image with VQGAN+CLIP</span></div>')
            badge = gr.HTML(app.badge(), elem_id="vq-queue")
        gr.Markdown(models.banner(real, vqgan), visible=not real, elem_id="vq-banner")

        with gr.Tabs(selected="create") as tabs:
            with gr.Tab("Create", id="create"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, elem_id="vq-form"):
                        fields = _form(start, app)
                        init_file, prompt_files, upload_note = fields.pop("_uploads")
                        variations, random_seeds = fields.pop("_variations")
                        submit = gr.Button("Generate", variant="primary", size="lg", elem_id="vq-generate",
                                           interactive=False)
                        notice = gr.HTML("", elem_id="vq-notice")
                    with gr.Column(scale=6, elem_id="vq-job"):
                        card = gr.HTML(job_card(None, None, None), elem_id="vq-card")
                        preview = gr.Image(label="Preview", type="filepath", interactive=False, height=420,
                                           elem_id="vq-preview", buttons=["fullscreen"])
                        with gr.Row():
                            cancel = gr.Button("Cancel job", variant="stop", interactive=False, elem_id="vq-cancel")
                            png = gr.DownloadButton("Download PNG", visible=False, elem_id="vq-png")
                            mp4 = gr.DownloadButton("Download timelapse MP4", visible=False, elem_id="vq-mp4")
                        my_jobs = gr.Dataframe(headers=["Job", "Status", "Prompt", "Size"], label="My jobs",
                                               interactive=False, elem_id="vq-my-jobs", max_height=260,
                                               column_widths=["12%", "22%", "50%", "16%"])
                        grid, grid_note, tile = _results_grid()

            with gr.Tab("History", id="history"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=7):
                        gallery = gr.Gallery(label="Finished images (newest first; click one for its settings)",
                                             columns=4, height="auto", object_fit="cover", allow_preview=False,
                                             elem_id="vq-gallery")
                    with gr.Column(scale=4, elem_id="vq-details"):
                        info = gr.Markdown("Click an image to see how it was made.")
                        use = gr.Button("Use these settings", variant="primary", visible=False, elem_id="vq-use")
                        with gr.Row():
                            history_png = gr.DownloadButton("Download PNG", visible=False, elem_id="vq-history-png")
                            history_mp4 = gr.DownloadButton("Download MP4", visible=False, elem_id="vq-history-mp4")

            with gr.Tab("Models", id="models"):
                gr.Markdown("Weights live in the verified cache (`vqclip weights list` shows the same). "
                            "A download resumes if interrupted and is checked against its sha256.")
                table = gr.Dataframe(headers=["Model", "Kind", "State", "Size", "About"], value=models.table,
                                     interactive=False, wrap=True, elem_id="vq-models")
                with gr.Row():
                    to_get = gr.Dropdown(models.downloadable(), label="Download a model", scale=3, value=None)
                    get = gr.Button("Download", scale=1, elem_id="vq-download")
                got = gr.Markdown()

        _api(app)

        form_inputs = [fields[f] for f in form.FIELDS]
        poll_out = [current, card, preview, cancel, png, mp4, my_jobs, badge, shown, gallery, history_ids,
                    history_key]
        poll_in = [session, current, shown, history_key]
        demo.load(app.new_session, session, [session, submit], **PRIVATE).then(app.poll, poll_in, poll_out, **PRIVATE)
        group_in, group_out = [group, group_key], [grid, tile_ids, grid_note, group_key]
        timer = gr.Timer(POLL_SECONDS)
        timer.tick(app.poll, poll_in, poll_out, show_progress="hidden", concurrency_limit=None, **PRIVATE)
        timer.tick(app.group_view, group_in, group_out, show_progress="hidden", concurrency_limit=None, **PRIVATE)
        demo.load(app.group_view, group_in, group_out, **PRIVATE)
        submit.click(app.submit, [session, init_name, prompt_names, variations, random_seeds, *form_inputs],
                     [current, notice, group], concurrency_limit=None, **PRIVATE).then(
            app.poll, poll_in, poll_out, **PRIVATE).then(app.group_view, group_in, group_out, **PRIVATE)
        cancel.click(app.cancel, [session, current], notice, **PRIVATE).then(app.poll, poll_in, poll_out, **PRIVATE)
        my_jobs.select(app.select_job, my_jobs, [current, shown], **PRIVATE).then(
            app.poll, poll_in, poll_out, **PRIVATE)
        init_file.upload(app.upload_init, init_file, [init_name, upload_note, init_file], **PRIVATE)
        init_file.clear(lambda: (None, ""), None, [init_name, upload_note], **PRIVATE)
        prompt_files.upload(app.upload_prompts, prompt_files, [prompt_names, upload_note, prompt_files], **PRIVATE)
        prompt_files.clear(lambda: ([], ""), None, [prompt_names, upload_note], **PRIVATE)
        gallery.select(app.show_history_item, history_ids, [selected, info, history_png, history_mp4, use],
                       **PRIVATE)
        use.click(app.use_settings, selected, [*form_inputs, init_name, prompt_names, upload_note, tabs], **PRIVATE)
        grid.select(app.select_tile, tile_ids, [picked, tile["info"], tile["panel"]], **PRIVATE)
        filled = [*form_inputs, init_name, prompt_names, notice, tabs]  # the note beside Generate
        tile["use"].click(app.use_seed, picked, [*filled, variations], **PRIVATE)
        tile["vary"].click(app.vary, picked, filled, **PRIVATE)
        export_in = [picked, tile["colors"], tile["transparent"], tile["tolerance"], tile["size"]]
        for kind, button in tile["buttons"].items():
            button.click(lambda *values, kind=kind: app.export(kind, *values), export_in,
                         [tile["files"], tile["note"]], **PRIVATE)
        get.click(app.download_model, to_get, [got, table, to_get, fields["vqgan"], fields["clip"]], **PRIVATE)
    return demo


def _results_grid():
    """The latest group's results as a grid, and what can be done with a picked tile: (grid, note, parts)."""
    grid = gr.Gallery(label="Results (click one to use its seed, vary it or export it)", columns=4, height="auto",
                      object_fit="contain", allow_preview=False, visible=False, elem_id="vq-grid")
    note = gr.Markdown("", elem_id="vq-grid-note", elem_classes="vq-small")
    t = {}
    with gr.Group(visible=False, elem_id="vq-picked") as t["panel"]:
        t["info"] = gr.Markdown(elem_id="vq-picked-info")
        with gr.Row():
            t["use"] = gr.Button("Use this seed", variant="primary", elem_id="vq-use-seed")
            t["vary"] = gr.Button("Vary this one", elem_id="vq-vary")
        gr.Markdown(results.VARY_HELP, elem_classes="vq-small")
        with gr.Accordion("Export", open=True, elem_id="vq-export"):
            gr.Markdown(results.EXPORT_HELP, elem_classes="vq-small")
            with gr.Row():
                t["colors"] = gr.Number(8, label="SVG colours (2-64)", precision=0, elem_id="vq-colors")
                t["size"] = gr.Number(1024, label="Resized PNG side, px (resampled)", precision=0,
                                      elem_id="vq-export-size")
            with gr.Row():
                t["transparent"] = gr.Checkbox(True, label="Transparent background (SVG and resized PNG)",
                                               elem_id="vq-transparent")
                t["tolerance"] = gr.Slider(0.0, 1.0, value=0.12, step=0.01, label="Background tolerance",
                                           elem_id="vq-tolerance")
            with gr.Row():
                t["buttons"] = {"svg": gr.Button("SVG", elem_id="vq-export-svg"),
                                "transparent": gr.Button("Transparent PNG", elem_id="vq-export-transparent"),
                                "resized": gr.Button("Resized PNG (resampled)", elem_id="vq-export-resized")}
            t["files"] = gr.File(label="Exported files", file_count="multiple", interactive=False,
                                 elem_id="vq-export-files")
            t["note"] = gr.HTML("", elem_id="vq-export-note")
    return grid, note, t


def _form(start: dict, app: WebApp) -> dict:
    """The generation form's components by field name (plus the upload widgets under "_uploads" and the
    variations count under "_variations")."""
    f = {}
    with gr.Row(equal_height=False):
        demo = start["vqgan"] == DEMO_VQGAN  # the demo knows only its own words: show one of its prompts
        f["prompt"] = gr.Textbox(label="Prompt", lines=3, value=start["prompt"], elem_id="vq-prompt", scale=5,
                                 placeholder=DEMO_EXAMPLE if demo else "a castle in the fog:1 | watercolour:0.5 | blurry:-0.5")
        with gr.Column(scale=1, min_width=120):
            variations = gr.Number(1, label="Variations", precision=0, minimum=1, elem_id="vq-variations",
                                   info="N jobs, seeds seed…seed+N-1")
            random_seeds = gr.Checkbox(False, label="random seeds", elem_id="vq-random-seeds")
    gr.Markdown(form.PROMPT_HELP, elem_id="vq-syntax")
    with gr.Row():
        f["preset"] = gr.Dropdown([*form.PRESETS, form.CUSTOM], value=start["preset"], label="Size", scale=2,
                                  elem_id="vq-preset")
        custom = start["preset"] == form.CUSTOM
        f["width"] = gr.Number(start["width"], label="Width", precision=0, step=16, visible=custom, scale=1)
        f["height"] = gr.Number(start["height"], label="Height", precision=0, step=16, visible=custom, scale=1)
    with gr.Row():
        f["steps"] = gr.Slider(10, app.limits.max_steps, value=start["steps"], step=10, label="Steps", scale=3,
                               elem_id="vq-steps")
        f["seed"] = gr.Number(start["seed"], label="Seed", precision=0, minimum=0, scale=2, elem_id="vq-seed")
        dice = gr.Button("🎲", scale=0, min_width=48, elem_id="vq-dice")
    with gr.Row():
        f["vqgan"] = gr.Dropdown(models.choices("vqgan"), value=start["vqgan"], label="VQGAN model",
                                 elem_id="vq-vqgan")
        f["clip"] = gr.Dropdown(models.choices("clip"), value=start["clip"], multiselect=True,
                                label="CLIP model(s)", elem_id="vq-clip")
    with gr.Accordion("Advanced", open=False, elem_id="vq-advanced"):
        with gr.Row():
            f["cutn"] = gr.Slider(1, app.limits.max_cutn, value=start["cutn"], step=1, label="Cutouts per step")
            f["cut_pow"] = gr.Slider(0.1, 3.0, value=start["cut_pow"], step=0.1, label="Cutout size power")
        with gr.Row():
            f["lr"] = gr.Number(start["lr"], label="Learning rate", minimum=0.001, step=0.01)
            f["optimizer"] = gr.Dropdown(list(form.OPTIMIZERS), value=start["optimizer"], label="Optimiser")
        f["augmentations"] = gr.CheckboxGroup([(name, code) for code, name in form.AUGMENTATION_NAMES.items()],
                                              value=start["augmentations"], label="Augmentations")
        f["video"] = gr.Checkbox(start["video"], label="Record a timelapse MP4")
        limits = app.limits
        gr.Markdown(f"Uploads: PNG, JPEG, WebP, GIF or BMP, up to {limits.max_upload_bytes / 2**20:.3g} MB and "
                    f"{limits.max_upload_pixels / 1e6:.0f} megapixels.", elem_classes="vq-small")
        with gr.Row():
            init_file = gr.File(label="Init image (start from it)", file_count="single", file_types=["image"],
                                height=120, elem_id="vq-init")
            prompt_files = gr.File(label="Image prompts (steer towards them)", file_count="multiple",
                                   file_types=["image"], height=120, elem_id="vq-image-prompts")
        f["init_weight"] = gr.Slider(0.0, 5.0, value=start["init_weight"], step=0.1,
                                     label="Init weight (pull towards the init image)")
        upload_note = gr.HTML("", elem_id="vq-upload-note")
    dice.click(lambda: random.randrange(2**31), None, f["seed"], **PRIVATE)
    f["preset"].change(lambda p: (gr.update(visible=p == form.CUSTOM),) * 2, f["preset"],
                       [f["width"], f["height"]], **PRIVATE)
    f["_uploads"] = (init_file, prompt_files, upload_note)
    f["_variations"] = (variations, random_seeds)
    return f


def _api(app: WebApp) -> None:
    """The documented endpoints for gradio_client: /submit, /status, /result."""
    gr.api(app.api_submit, api_name="submit", concurrency_limit=None)
    gr.api(app.api_status, api_name="status", concurrency_limit=None)
    with gr.Row(visible=False):
        job = gr.Number(label="job", precision=0)
        result = gr.File(label="result PNG")
        gr.Button(visible=False).click(app.api_result, job, result, api_name="result",
                                       api_description="The finished job's PNG, with its settings in its "
                                                       "text chunks.")
