"""The page: header, Create / History / Models tabs, and the wiring of components to `WebApp` handlers.

    from app.web.layout import build
    demo = build(web_app)        # a gr.Blocks; `vqclip serve` launches it
"""
from __future__ import annotations

import random

import gradio as gr

from app.web import form, models
from app.web.handlers import WebApp
from app.web.jobs_view import job_card

POLL_SECONDS = 2.0
PRIVATE = dict(api_visibility="private")


def build(app: WebApp) -> gr.Blocks:
    vqgan, clip, real = models.default_pair()
    start = form.defaults(vqgan, clip, real)
    with gr.Blocks(title="vqclip · VQGAN+CLIP") as demo:
        session = gr.BrowserState(None, storage_key="vqclip-session")
        current, shown, history_key = gr.State(None), gr.State(""), gr.State("")
        init_name, prompt_names, history_ids, selected = gr.State(None), gr.State([]), gr.State([]), gr.State(None)

        with gr.Row(elem_id="vq-header"):
            gr.HTML('<div class="vq-brand"><span class="vq-logo">◆</span> vqclip'
                    '<span class="vq-tagline">text to image with VQGAN+CLIP</span></div>')
            badge = gr.HTML(app.badge(), elem_id="vq-queue")
        gr.Markdown(models.banner(real), visible=not real, elem_id="vq-banner")

        with gr.Tabs(selected="create") as tabs:
            with gr.Tab("Create", id="create"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, elem_id="vq-form"):
                        fields = _form(start, app)
                        init_file, prompt_files, upload_note = fields.pop("_uploads")
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
        gr.Timer(POLL_SECONDS).tick(app.poll, poll_in, poll_out, show_progress="hidden", concurrency_limit=None,
                                    **PRIVATE)
        submit.click(app.submit, [session, init_name, prompt_names, *form_inputs], [current, notice],
                     concurrency_limit=None, **PRIVATE).then(app.poll, poll_in, poll_out, **PRIVATE)
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
        get.click(app.download_model, to_get, [got, table, to_get, fields["vqgan"], fields["clip"]], **PRIVATE)
    return demo


def _form(start: dict, app: WebApp) -> dict:
    """The generation form's components by field name (plus the upload widgets under "_uploads")."""
    f = {}
    f["prompt"] = gr.Textbox(label="Prompt", lines=3, value=start["prompt"], elem_id="vq-prompt",
                             placeholder="a castle in the fog:1 | watercolour:0.5 | blurry:-0.5")
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
