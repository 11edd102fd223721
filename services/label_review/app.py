"""The review page (Gradio): one flagged image at a time with its labels, top-5, Grad-CAMs and the actions."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any, Optional

import cv2
import gradio as gr
import numpy as np

from services.label_review.cams import CamUnavailable
from services.label_review.decisions import summary_lines
from services.label_review.issues import class_choices, pair_choices
from services.label_review.session import ReviewSession

SHORTCUTS = {"k": "btn-keep", "a": "btn-accept", "r": "btn-remove", "s": "btn-skip", "b": "btn-back",
             "ArrowLeft": "btn-back", "n": "btn-next", "ArrowRight": "btn-next"}
"""Key -> button id; 'o' focuses the other-class search box. Keys typed into a text field are left alone."""

SHORTCUT_JS = """
<script>
document.addEventListener('keydown', (e) => {
  const t = e.target;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) {
    if (e.key === 'Escape') t.blur();
    return;
  }
  if (e.key === 'o') {
    const box = document.querySelector('#other-class input');
    if (box) { box.focus(); e.preventDefault(); }
    return;
  }
  const id = (__KEYS__)[e.key];
  const button = id && document.getElementById(id);
  if (button && !button.disabled) { button.click(); e.preventDefault(); }
});
</script>
"""

CSS = """
#progress { font-size: 1.05em; }
#item .verdict { font-size: 1.15em; }
#status { min-height: 1.6em; }
#top5 h2.output-class { display: none; }  /* the top class is in the bars and the item line */
footer { display: none !important; }
"""

DISPLAY_MIN_PX = 300
"""Shown images are upscaled to at least this short side (px)."""

ALL = ""
"""Filter value meaning 'no condition'."""


@dataclass
class _Parts:
    """The page's components, in the order :func:`_render` fills them."""

    cursor: gr.Number
    progress: gr.Markdown
    image: gr.Image
    item: gr.Markdown
    top5: gr.Label
    cam_given: gr.Image
    cam_suggested: gr.Image
    cam_note: gr.Markdown
    status: gr.Markdown
    summary: gr.Markdown
    other: gr.Dropdown

    def outputs(self) -> list:
        return [self.cursor, self.progress, self.image, self.item, self.top5, self.cam_given, self.cam_suggested,
                self.cam_note, self.status, self.summary, self.other]


def _pct(p: float) -> str:
    return f"{100 * p:.1f} %"


def _for_display(rgb: np.ndarray, min_side: int = DISPLAY_MIN_PX) -> np.ndarray:
    """Small images (the bundled sample's are 112 px) upscaled so a reviewer can see them; large ones as they are."""
    h, w = rgb.shape[:2]
    if min(h, w) >= min_side:
        return rgb
    f = min_side / min(h, w)
    return cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)


def _item_markdown(session: ReviewSession, pos: int) -> str:
    it, cl = session.issues.items[pos], session.issues.classes
    d = session.decision(pos)
    if d is None:
        state = "undecided"
    elif d.decision == "relabel":
        state = f"**relabel → {html.escape(d.label)}** ({d.time})"
    else:
        state = f"**{d.decision}** ({d.time})"
    probs = session.issues.probs(it)
    return (f"<div class='verdict'>Given: <b>{html.escape(cl.label(it.given))}</b> ({_pct(probs[it.given])}) "
            f"&nbsp;→&nbsp; suggested: <b>{html.escape(cl.label(it.suggested))}</b> ({_pct(it.confidence)})</div>\n\n"
            f"sample {it.id} · `{it.path or '(no path)'}` · label-quality score {it.score:.4f} · decision: {state}")


def _progress(session: ReviewSession, queue: list[int], pos: Optional[int]) -> str:
    s = session.summary()
    where = (f"showing #{queue.index(pos) + 1} of {len(queue)} in this view" if pos in queue
             else f"{len(queue)} in this view")
    return f"**{s['reviewed']} of {s['flagged']} reviewed** · {s['skip']} skipped · {where}"


def _render(session: ReviewSession, queue: list[int], pos: Optional[int], status: str = "") -> list:
    """Every output of the page for the item at ``pos`` (None: nothing left to show in ``queue``)."""
    summary = "\n\n".join(summary_lines(session.summary()))
    progress = _progress(session, queue, pos)
    if pos is None:
        text = ("Nothing to review in this view." if not queue else
                f"All {len(queue)} items in this view have a decision. Press Back (B) to revisit one, or change "
                f"the filter.")
        return [None, progress, None, text, None, gr.update(value=None, visible=False),
                gr.update(value=None, visible=False), "", status, summary, gr.update(value=None)]
    it = session.issues.items[pos]
    rgb, note = session.image(it)
    cam_given = cam_suggested = None
    cam_note = ""
    if note is None:
        try:
            cam_given, cam_suggested = session.cams.render(it, rgb)
        except CamUnavailable as e:
            cam_note = str(e)
    else:
        cam_note = "No Grad-CAM without the image."
    probs = session.issues.probs(it)
    top = probs.argsort()[::-1][:5]
    cl = session.issues.classes
    top5 = {cl.label(int(c)): float(probs[c]) for c in top}
    return [pos, progress, _for_display(rgb), _item_markdown(session, pos), top5,
            gr.update(value=cam_given, visible=cam_given is not None),
            gr.update(value=cam_suggested, visible=cam_suggested is not None),
            cam_note, "⚠️ " + note if note else status, summary, gr.update(value=None)]


def _layout(session: ReviewSession) -> tuple[_Parts, dict[str, Any]]:
    cl, items = session.issues.classes, session.issues.items
    gr.Markdown(f"# Label review\n`{session.issues.directory}`: {len(items)} flagged samples, worst label-quality "
                f"score first. Decisions are saved at once to `{session.log.path}`.")
    progress = gr.Markdown(elem_id="progress")
    with gr.Row():
        class_filter = gr.Dropdown([("All classes", ALL)] + class_choices(cl, items), value=ALL,
                                   label="Filter: class (given or suggested)", elem_id="filter-class")
        pair_filter = gr.Dropdown([("All pairs", ALL)] + pair_choices(cl, items), value=ALL,
                                  label="Filter: given → suggested", elem_id="filter-pair")
    item = gr.Markdown(elem_id="item")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            image = gr.Image(label="Image", type="numpy", interactive=False, height=300, elem_id="image")
        with gr.Column(scale=2):
            gr.Markdown("**Model top-5** (out-of-sample probabilities)")
            top5 = gr.Label(num_top_classes=5, show_label=False, elem_id="top5")
        with gr.Column(scale=4):
            with gr.Row():
                cam_given = gr.Image(label="Grad-CAM: given class", type="numpy", interactive=False, height=250,
                                     elem_id="cam-given", format="png")
                cam_suggested = gr.Image(label="Grad-CAM: suggested class", type="numpy", interactive=False,
                                         height=250, elem_id="cam-suggested", format="png")
            cam_note = gr.Markdown(elem_id="cam-note")
    with gr.Row():
        b = {"keep": gr.Button("Keep (K)", variant="secondary", elem_id="btn-keep"),
             "accept": gr.Button("Relabel to suggestion (A)", variant="primary", elem_id="btn-accept"),
             "remove": gr.Button("Remove (R)", variant="stop", elem_id="btn-remove"),
             "skip": gr.Button("Skip (S)", elem_id="btn-skip"),
             "back": gr.Button("◀ Back (B)", size="sm", elem_id="btn-back"),
             "next": gr.Button("Next ▶ (N)", size="sm", elem_id="btn-next")}
    with gr.Row():
        other = gr.Dropdown([(cl.label(i), w) for i, w in sorted(enumerate(cl.wnids), key=lambda t: cl.short(t[0]))],
                            value=None, label="Relabel to another class (O to search)", filterable=True,
                            elem_id="other-class", scale=3)
        b["other"] = gr.Button("Relabel to this class", elem_id="btn-other", scale=1)
    status = gr.Markdown(elem_id="status")
    gr.Markdown("Shortcuts: **K** keep · **A** relabel to the suggestion · **R** remove · **S** skip · **O** search "
                "another class · **B** / ← back · **N** / → next. A new decision on an item replaces the old one.")
    with gr.Accordion("Bulk accept", open=False):
        with gr.Row():
            b["threshold"] = gr.Slider(0.0, 1.0, value=0.9, step=0.01, elem_id="bulk-threshold",
                                       label="Suggested-class probability at least")
            b["bulk"] = gr.Button("Bulk accept the suggestions in this view…", elem_id="btn-bulk")
        with gr.Group(visible=False, elem_id="bulk-confirm") as confirm_box:
            b["confirm_text"] = gr.Markdown(elem_id="bulk-confirm-text")
            with gr.Row():
                b["confirm"] = gr.Button("Confirm", variant="primary", elem_id="btn-bulk-confirm")
                b["cancel"] = gr.Button("Cancel", elem_id="btn-bulk-cancel")
        b["confirm_box"] = confirm_box
    with gr.Accordion("Summary", open=True):
        summary = gr.Markdown(elem_id="summary")
        gr.Markdown(f"Export the cleaning manifest: `python -m services.label_review export "
                    f"{session.issues.directory} --out MANIFEST_DIR`")
    b["filters"] = [class_filter, pair_filter]
    # The shown item's position lives in the page, not in a gr.State (kept on the server): an event carries the
    # value the page held when it was triggered.
    cursor = gr.Number(None, precision=0, visible=False, elem_id="cursor")
    parts = _Parts(cursor=cursor, progress=progress, image=image, item=item, top5=top5, cam_given=cam_given,
                   cam_suggested=cam_suggested, cam_note=cam_note, status=status, summary=summary, other=other)
    return parts, b


def _wire(demo: gr.Blocks, session: ReviewSession, p: _Parts, b: dict[str, Any]) -> None:
    outs = p.outputs()
    filters = b["filters"]
    cl = session.issues.classes

    def shown(value: Optional[float]) -> Optional[int]:
        ok = value is not None and 0 <= value < len(session.issues.items)
        return int(value) if ok else None

    def start(cls: str, pair: str) -> list:
        q = session.queue(cls, pair)
        return _render(session, q, session.first_open(q))

    def act(decision: str):
        def handler(value: Optional[float], cls: str, pair: str, other: Optional[str]) -> list:
            q, pos = session.queue(cls, pair), shown(value)
            if pos is None:
                return _render(session, q, session.first_open(q), "Nothing to decide here.")
            if decision == "other" and not other:
                return _render(session, q, pos, "Choose a class in the dropdown first.")
            label = cl.index[other] if decision == "other" else None
            d = session.decide(pos, "relabel" if decision in ("accept", "other") else decision, label)
            what = f"relabel → {d.label}" if d.decision == "relabel" else d.decision
            return _render(session, q, session.next_open(q, pos), f"Saved sample {d.id}: {what}.")
        return handler

    def move(delta: int):
        def handler(value: Optional[float], cls: str, pair: str) -> list:
            q = session.queue(cls, pair)
            return _render(session, q, session.step(q, shown(value), delta))
        return handler

    # trigger_mode "multiple": a key pressed while the previous event runs is queued, not dropped, and carries the
    # cursor the page showed when it was pressed, so a decision always applies to the item the reviewer saw (a
    # double press records the same decision twice on the same item).
    inputs = [p.cursor, *filters, p.other]
    for name in ("keep", "accept", "remove", "skip", "other"):
        b[name].click(act(name), inputs=inputs, outputs=outs, concurrency_id="review", show_progress="hidden",
                      trigger_mode="multiple")
    for name, delta in (("back", -1), ("next", +1)):
        b[name].click(move(delta), inputs=[p.cursor, *filters], outputs=outs, concurrency_id="review",
                      show_progress="hidden", trigger_mode="multiple")
    for f in filters:
        f.input(start, inputs=filters, outputs=outs, concurrency_id="review")
    demo.load(start, inputs=filters, outputs=outs, concurrency_id="review")

    pending = gr.State([])

    def preview(cls: str, pair: str, threshold: float):
        cands = session.bulk_candidates(session.queue(cls, pair), float(threshold))
        if not cands:
            return [], gr.update(visible=False), "", f"No undecided item in this view has a suggestion at ≥ " \
                                                     f"{threshold:.2f}."
        items = "item" if len(cands) == 1 else "items"
        text = (f"Relabel **{len(cands)}** undecided {items} in this view to their suggested class (suggested-class "
                f"probability ≥ {threshold:.2f})? Decisions already made are not changed.")
        return cands, gr.update(visible=True), text, ""

    def confirm(cands: list[int], value: Optional[float], cls: str, pair: str) -> list:
        n = session.bulk_accept(cands)
        q, pos = session.queue(cls, pair), shown(value)
        nxt = pos if pos is not None and session.decision(pos) is None else session.next_open(q, pos)
        done = f"Relabelled {n} {'item' if n == 1 else 'items'} to the suggestion."
        return [[], gr.update(visible=False)] + _render(session, q, nxt, done)

    b["bulk"].click(preview, inputs=[*filters, b["threshold"]],
                    outputs=[pending, b["confirm_box"], b["confirm_text"], p.status])
    b["confirm"].click(confirm, inputs=[pending, p.cursor, *filters], outputs=[pending, b["confirm_box"], *outs],
                       concurrency_id="review")
    b["cancel"].click(lambda: ([], gr.update(visible=False), "Bulk accept cancelled."),
                      outputs=[pending, b["confirm_box"], p.status])


def build_app(session: ReviewSession) -> gr.Blocks:
    """The review page for ``session``; see :mod:`services.label_review` for what it shows and does."""
    with gr.Blocks(title="Label review", analytics_enabled=False) as demo:
        parts, buttons = _layout(session)
        _wire(demo, session, parts, buttons)
    return demo


def launch(demo: gr.Blocks, host: Optional[str] = None, port: Optional[int] = None, **kwargs: Any):
    """Serve the page, one event at a time (decisions and Grad-CAM share one log and one model)."""
    demo.queue(default_concurrency_limit=1)
    return demo.launch(server_name=host, server_port=port, show_error=True, css=CSS,
                       head=SHORTCUT_JS.replace("__KEYS__", json.dumps(SHORTCUTS)), **kwargs)

