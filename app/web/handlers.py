"""The web UI's event handlers: submit, poll, cancel, uploads, history, models, and the public API.

Every handler reads or writes the job store; none runs the engine. A browser is known by a random session
id kept in its localStorage (gr.BrowserState), so a reload finds its jobs again; with --auth the user name is
the owner instead, on every device. Handlers return plain values or gr.update/gr.skip for the components
that `app.web.layout` wires them to, in the order given there.
"""
from __future__ import annotations

import html
import random
import re
import secrets
from pathlib import Path

import gradio as gr

from app.jobs import FINAL_STATES, QUEUED, RUNNING, SUCCEEDED, JobStore
from app.logo import varied, variation_seeds
from app.web import form, models, results, uploads
from app.web.jobs_view import FileCache, RateTracker, caption, job_card, job_rows
from app.web.limits import Limits
from generator.errors import VqclipError
from generator.shapes.advice import prompt_advice

HISTORY_SIZE = 24
MY_JOBS = 12
SESSION = re.compile(r"[0-9a-f]{32}")


def _ok(text: str) -> str:
    return f'<div class="vq-notice vq-ok">{text}</div>'


def _error(text: str) -> str:
    return f'<div class="vq-notice vq-error" role="alert">{html.escape(text)}</div>'


class WebApp:
    """The state one server shares between sessions: the store, the limits, the download files.

    Args:
        store: the job queue.
        limits: what one request and one user may ask for.
        files: folder for the files behind download links.
        local_worker: this server runs its own worker, so missing weights are reported at submit.
        private_history: show each user only their own jobs (when users log in).
    """

    def __init__(self, store: JobStore, limits: Limits, files: Path, local_worker: bool = True,
                 private_history: bool = False):
        self.store, self.limits = store, limits
        self.files = FileCache(files)
        self.rates = RateTracker()
        self.local_worker, self.private_history = local_worker, private_history

    # -- who is asking ---------------------------------------------------------------------------------------

    @staticmethod
    def new_session(session: str | None):
        """On page load: (this browser's session id, a new one the first time; the Generate button, which
        stays disabled until then so that no job is submitted without an owner)."""
        if not (isinstance(session, str) and SESSION.fullmatch(session)):
            session = secrets.token_hex(16)
        return session, gr.update(interactive=True)

    @staticmethod
    def owner(session: str | None, request: gr.Request | None) -> str:
        user = getattr(request, "username", None) if request is not None else None
        if user:
            return f"user:{user}"
        if isinstance(session, str) and SESSION.fullmatch(session):
            return f"browser:{session}"
        return "anonymous"

    # -- submit and cancel -----------------------------------------------------------------------------------

    def submit(self, session, init_name, prompt_names, variations, random_seeds, *values,
               request: gr.Request = None):
        """Queue the form's job, one per variation: (current job id, notice, the group's job ids)."""
        owner = self.owner(session, request)
        if owner == "anonymous":
            return gr.skip(), _error("The page is still connecting; try again in a moment."), gr.skip()
        try:
            config = form.to_config(dict(zip(form.FIELDS, values)), init_name, prompt_names, self.limits,
                                    check_weights=self.local_worker)
            seeds = variation_seeds(config["seed"], form.whole(variations, "variations"), bool(random_seeds))
            self.limits.check_queue(self.store, owner, len(seeds))
        except VqclipError as exc:
            return gr.skip(), _error(_sentence(str(exc))), gr.skip()
        ids = [self.store.submit({**config, "seed": seed}, owner=owner) for seed in seeds]
        advice = prompt_advice(config["prompts"], config["vqgan"])
        tail = f" {html.escape(advice)}" if advice else ""
        if len(ids) > 1:
            return ids[0], _ok(f"{len(ids)} jobs queued (#{ids[0]}–#{ids[-1]}), seeds "
                               f"{', '.join(map(str, seeds))}; they appear in the grid as they finish.{tail}"), ids
        position = self.store.position(ids[0])
        where = f"#{position} in line" if position else "starting"
        return ids[0], _ok(f"Job #{ids[0]} queued ({where}).{tail}"), ids

    def cancel(self, session, current, request: gr.Request = None):
        """Cancel the job shown, if it is the user's: a notice."""
        job = self.store.get(int(current)) if current else None
        if job is None or job.owner != self.owner(session, request):
            return _error("No job of yours to cancel.")
        if job.done or not self.store.cancel(job.id):
            return _error(f"Job #{job.id} has already ended.")
        if job.state == QUEUED:
            return _ok(f"Job #{job.id} cancelled.")
        return _ok(f"Job #{job.id} stops after its current step.")

    # -- polling -----------------------------------------------------------------------------------------------

    def poll(self, session, current, shown, history_key, request: gr.Request = None):
        """Refresh the job card, preview, downloads, my jobs, the queue badge and (when it changed) the
        history: (current, card, preview, cancel, png, mp4, rows, badge, shown, gallery, ids, history_key)."""
        owner = self.owner(session, request)
        mine = self.store.list(owner=owner, limit=MY_JOBS)
        job = self.store.get(int(current)) if current else None
        if job is None or job.owner != owner:
            active = [j for j in mine if not j.done]
            job = self.store.get((active[-1] if active else mine[0]).id) if mine else None
        positions = {j.id: p for j in mine if j.state == QUEUED and (p := self.store.position(j.id))}
        position = positions.get(job.id) if job else None
        card = job_card(job, position, self.rates.observe(job) if job else None)
        key = f"{job.id}:{job.state}:{job.step}" if job else ""
        if key == shown:
            preview = png = mp4 = gr.skip()
        else:
            image = job.result or job.preview if job else None
            preview = self._image_file(job, image) if image else None
            png = gr.update(value=self.files.result(job), visible=True) if job and job.result else gr.update(
                visible=False)
            mp4 = gr.update(value=self.files.timelapse(job), visible=True) if job and job.timelapse else gr.update(
                visible=False)
        cancel = gr.update(interactive=bool(job and not job.done and not job.cancel_requested))
        gallery, ids, new_key = self.history(session, history_key, request)
        return (job.id if job else None, card, preview, cancel, png, mp4, job_rows(mine, positions),
                self.badge(), key, gallery, ids, new_key)

    def _image_file(self, job, data: bytes) -> str:
        """A preview as a file named by job and step, so that every step is a new image for the browser."""
        if job.result:
            return self.files.result(job)
        path = self.files.write(job.id, f"preview-{job.step or 0}.png", data)
        for old in Path(path).parent.glob("preview-*.png"):
            if str(old) != path:
                old.unlink(missing_ok=True)
        return path

    def badge(self) -> str:
        counts = self.store.counts()
        return (f'<span class="vq-badge">Queue: <b>{counts[QUEUED]}</b> waiting · '
                f'<b>{counts[RUNNING]}</b> running · <b>{counts[SUCCEEDED]}</b> made</span>')

    def select_job(self, rows, evt: gr.SelectData):
        """A row of "my jobs" was clicked: show that job."""
        row = evt.row_value if getattr(evt, "row_value", None) else None
        if row is None and isinstance(evt.index, (list, tuple)):
            row = rows.values.tolist()[evt.index[0]] if hasattr(rows, "values") else rows[evt.index[0]]
        return int(row[0]) if row else gr.skip(), ""

    # -- uploads -----------------------------------------------------------------------------------------------

    def upload_init(self, file):
        """(init upload name, note, file component): the upload stored under a generated name, or refused."""
        if not file:
            return None, "", gr.skip()
        try:
            name = uploads.store_file(_path(file), self.limits, "the init image")
        except VqclipError as exc:
            return None, _error(_sentence(str(exc))), None
        return name, _ok("Init image ready."), gr.skip()

    def upload_prompts(self, files):
        """(image prompt upload names, note, file component)."""
        files = [f for f in (files or []) if f]
        if not files:
            return [], "", gr.skip()
        if len(files) > self.limits.max_image_prompts:
            return [], _error(f"At most {self.limits.max_image_prompts} image prompts."), None
        names = []
        try:
            for number, file in enumerate(files, 1):
                names.append(uploads.store_file(_path(file), self.limits, f"image prompt {number}"))
        except VqclipError as exc:
            return [], _error(_sentence(str(exc))), None
        return names, _ok(f"{len(names)} image prompt(s) ready."), gr.skip()

    # -- history -----------------------------------------------------------------------------------------------

    def history(self, session, key, request: gr.Request = None):
        """(gallery, job ids, key) of the newest finished images; gr.skip() while nothing changed."""
        owner = self.owner(session, request) if self.private_history else None
        done = self.store.list(state=SUCCEEDED, owner=owner, limit=HISTORY_SIZE)
        new_key = ",".join(str(j.id) for j in done)
        if new_key == key:
            return gr.skip(), gr.skip(), key
        items = []
        for light in done:
            path = self.files.cached_result(light.id)
            if path is None:
                job = self.store.get(light.id)
                path = self.files.result(job) if job and job.result else None
            if path:
                items.append((path, caption(light.config)))
        return items, [j.id for j in done], new_key

    def show_history_item(self, ids, evt: gr.SelectData):
        """A gallery image was clicked: (selected id, details, png, mp4, use-button)."""
        if not ids or evt.index is None or evt.index >= len(ids):
            return None, "", gr.update(visible=False), gr.update(visible=False), gr.update(visible=False)
        job = self.store.get(ids[evt.index])
        if job is None:
            return None, _error("That job is gone from the store."), *(gr.update(visible=False),) * 3
        return (job.id, details(job), gr.update(value=self.files.result(job), visible=True),
                gr.update(value=self.files.timelapse(job), visible=bool(job.timelapse)), gr.update(visible=True))

    def use_settings(self, selected):
        """Fill the form with a history job's settings: form values..., init name, prompt names, note, tabs."""
        job = self.store.get(int(selected)) if selected else None
        if job is None:
            return (*(gr.skip(),) * len(form.FIELDS), gr.skip(), gr.skip(), "", gr.skip())
        values, init, names = form.from_config(job.config)
        kept = [what for what, there in (("the init image", init), (f"{len(names)} image prompt(s)", names))
                if there]
        note = _ok(f"Settings of job #{job.id} loaded" + (f", with {' and '.join(kept)}" if kept else "")
                   + ". Change what you like and press Generate.")
        return (*(values[f] for f in form.FIELDS), init, names, note, gr.Tabs(selected="create"))

    # -- the results grid: variations, their seeds, exports ----------------------------------------------------

    def group_view(self, group, key):
        """(grid, tile job ids, note, key) of the latest group of variations; the grid is sent again only
        when its set of finished tiles changed, so a selection survives the polling."""
        jobs = [job for job in map(self.store.get, [int(i) for i in group or []]) if job is not None]
        items, ids, note = results.tiles(jobs, self.files)
        new_key = ",".join(map(str, ids)) + "/" + ",".join(str(j.id) for j in jobs)
        if new_key == key:
            return gr.skip(), gr.skip(), note, key
        return gr.update(value=items, visible=bool(jobs)), ids, note, new_key

    def select_tile(self, ids, evt: gr.SelectData):
        """A tile was clicked: (picked job id, its details, the actions and export panel shown)."""
        job = self.store.get(ids[evt.index]) if ids and evt.index is not None and evt.index < len(ids) else None
        if job is None:
            return None, "", gr.update(visible=False)
        return job.id, details(job), gr.update(visible=True)

    def use_seed(self, picked):
        """Fill the form with a result's settings and seed, one variation: use_settings' outputs, variations."""
        return (*self.use_settings(picked), 1 if picked else gr.skip())

    def vary(self, picked):
        """Fill the form to vary a result (same seed and settings, started from its image): as use_settings."""
        job = self.store.get(int(picked)) if picked else None
        if job is None or not job.result:
            return (*(gr.skip(),) * (len(form.FIELDS) + 2), _error("Pick a finished result first."), gr.skip())
        try:
            image = uploads.path_of(uploads.store_image(job.result, self.limits, "the result"))
        except VqclipError as exc:
            return (*(gr.skip(),) * (len(form.FIELDS) + 2), _error(_sentence(str(exc))), gr.skip())
        values, init, names = form.from_config(varied(job.config, image))
        note = _ok(f"Ready to vary job #{job.id} (seed {job.config.get('seed')}): same settings, starting from "
                   f"its image with init weight {values['init_weight']}. Press Generate.")
        return (*(values[f] for f in form.FIELDS), init, names, note, gr.Tabs(selected="create"))

    def export(self, kind, picked, colors, transparent, tolerance, size):
        """Export the picked result (kind: svg, transparent, resized): (files to download, notice)."""
        job = self.store.get(int(picked)) if picked else None
        try:
            paths = results.export(self.files, job, kind, colors, transparent, tolerance, size)
        except VqclipError as exc:
            gr.Warning(_sentence(str(exc)))
            return None, _error(_sentence(str(exc)))
        return paths, _ok(f"Exported job #{job.id}: {', '.join(Path(p).name for p in paths)}.")

    # -- models ------------------------------------------------------------------------------------------------

    def download_model(self, name, progress=gr.Progress()):
        """Download a model's weights with a progress bar: (message, table, downloadable, vqgan, clip)."""
        if not name:
            message = "Pick a model to download."
        else:
            def report(done: int, total: int | None) -> None:
                progress((done, total) if total else None, desc=f"{name}: {done / 1e6:,.0f} MB", unit="bytes")

            message = models.download(name, report)
        return (message, models.table(), gr.update(choices=models.downloadable(), value=None),
                gr.update(choices=models.choices("vqgan")), gr.update(choices=models.choices("clip")))

    # -- the public API ----------------------------------------------------------------------------------------

    def api_submit(self, prompt: str, width: int = 256, height: int = 256, steps: int = 300, seed: int = -1,
                   vqgan: str = "", clip: str = "", cutn: int = 32, request: gr.Request = None) -> dict:
        """Queue a text-to-image job; seed -1 picks one at random, empty vqgan/clip the server's default pair.
        Returns {"job": id, "position": place in line}."""
        vqgan_default, clip_default, _ = models.default_pair()
        values = {**form.defaults(vqgan_default, clip_default, True), "prompt": prompt, "preset": form.CUSTOM,
                  "width": width, "height": height, "steps": steps, "cutn": cutn,
                  "seed": random.randrange(2**31) if int(seed) < 0 else seed, "vqgan": vqgan or vqgan_default,
                  "clip": [c.strip() for c in (clip or clip_default).split(",") if c.strip()], "video": False}
        owner = f"user:{request.username}" if getattr(request, "username", None) else "api"
        try:
            config = form.to_config(values, None, None, self.limits, check_weights=self.local_worker)
            self.limits.check_queue(self.store, owner)
        except VqclipError as exc:
            raise gr.Error(_sentence(str(exc))) from None
        job_id = self.store.submit(config, owner=owner)
        return {"job": job_id, "position": self.store.position(job_id)}

    def api_status(self, job: int) -> dict:
        """State of a job: {"job", "state", "step", "total", "loss", "position", "error", "done"}."""
        found = self.store.get(int(job))
        if found is None:
            raise gr.Error(f"No job {job}.")
        return {"job": found.id, "state": found.state, "step": found.step, "total": found.total,
                "loss": found.loss, "position": self.store.position(found.id), "error": found.error,
                "done": found.state in FINAL_STATES}

    def api_result(self, job):
        """The finished job's PNG, with its settings in the PNG's text chunks."""
        found = self.store.get(int(job)) if job is not None else None
        if found is None or not found.result:
            state = found.state if found else "unknown"
            raise gr.Error(f"Job {job} has no image yet (it is {state}); poll /status until done.")
        return self.files.result(found)


def details(job) -> str:
    """A finished job's settings as Markdown."""
    c = job.config
    rows = [("Prompt", c.get("prompts") or "(image prompt)"), ("Size", f"{c.get('width')}×{c.get('height')}"),
            ("Steps", c.get("steps")), ("Seed", c.get("seed")), ("VQGAN", c.get("vqgan")), ("CLIP", c.get("clip")),
            ("Cutouts", f"{c.get('cutn')} (cut_pow {c.get('cut_pow')})"),
            ("Optimiser", f"{c.get('optimizer')}, lr {c.get('lr')}"),
            ("Augmentations", ", ".join(form.AUGMENTATION_NAMES.get(a, a) for a in c.get("augmentations", []))),
            ("Init image", "yes" if c.get("init_image") else "none"),
            ("Image prompts", len(c.get("image_prompts", [])))]
    table = "\n".join(f"| {name} | {str(value).replace('|', '&#124;')} |" for name, value in rows)
    return f"#### Job #{job.id}\n\n| Setting | Value |\n| --- | --- |\n{table}"


def _path(file) -> str:
    return file if isinstance(file, str) else getattr(file, "name", None) or file["path"]


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."
