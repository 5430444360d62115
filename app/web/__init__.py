"""The web UI of `vqclip serve` (Gradio Blocks): layout, handlers, form, job views, models, uploads, limits
and auth, one module each. It reads and writes the job store only; workers run the engine.
"""
