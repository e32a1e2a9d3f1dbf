"""A contact sheet per run: the PNGs an accuracy-mode run saved (images/sample_NNNNN.png), one row per
prompt category. Sample index i is prompt i of the run's prompt pack (harness.data.qsl), so the category comes
from the pack named in manifest.json, when it is still there and unchanged (same SHA-256)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from harness.data.prompts import load_prompts
from harness.errors import HarnessError
from harness.report.collect import RunData

log = logging.getLogger(__name__)

THUMB_PX = 128
PER_CATEGORY = 8
LABEL_PX = 18
UNKNOWN = "category unknown"


def categories(run: RunData) -> tuple[dict[int, str], str]:
    """Sample index -> category, and a note when the prompt pack could not be used."""
    prompts = run.manifest.get("prompts") or {}
    source = prompts.get("source")
    if not source:
        return {}, "the manifest names no prompt source; images are not grouped by category"
    if not Path(source).is_file():
        return {}, f"prompt source {source} is gone; images are not grouped by category"
    negative = (run.config.get("model") or {}).get("negative_prompt", "")
    try:
        pack = load_prompts(source, negative)
    except HarnessError as exc:
        return {}, f"prompt source {source} cannot be read ({exc}); images are not grouped by category"
    if prompts.get("sha256") and pack.sha256 != prompts["sha256"]:
        return {}, f"prompt source {source} changed since the run; images are not grouped by category"
    return dict(enumerate(pack.categories)), ""


def contact_sheet(run: RunData) -> tuple[bytes | None, str]:
    """(PNG bytes, note); None when the run saved no images."""
    if not run.images:
        return None, ""
    by_index, note = categories(run)
    groups: dict[str, list[tuple[str, Path]]] = {}
    for index, path in run.images:
        groups.setdefault(by_index.get(index, UNKNOWN), []).append((f"#{index}", path))
    rows = [
        (f"{name} ({len(items)} image{'s' if len(items) != 1 else ''})", items)
        for name, items in sorted(groups.items())
    ]
    return _render(rows), note


def diversity_sheet(run: RunData) -> bytes | None:
    """The LPIPS diversity images (quality.diversity_seeds): one row per prompt, one column per seed."""
    lpips = (run.summary.quality or {}).get("lpips_diversity") or {}
    rows = []
    for p in lpips.get("per_prompt") or []:
        items = [
            (f"seed {k}", run.path / rel) for k, rel in enumerate(p.get("images") or []) if (run.path / rel).is_file()
        ]
        if items:
            label = f"{p.get('category')}: {str(p.get('prompt'))[:70]} (LPIPS {p.get('mean', float('nan')):.3f})"
            rows.append((label, items))
    return _render(rows) if rows else None


def _render(rows: list[tuple[str, list[tuple[str, Path]]]]) -> bytes:
    """Rows of labelled thumbnails on a white sheet, PNG bytes."""
    from PIL import Image, ImageDraw

    columns = min(PER_CATEGORY, max(len(items) for _, items in rows))
    cell = THUMB_PX + LABEL_PX
    sheet = Image.new("RGB", (max(columns * (THUMB_PX + 4) + 4, 480), len(rows) * (cell + LABEL_PX) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    y = 4
    for label, items in rows:
        draw.text((4, y), label, fill="black")
        y += LABEL_PX
        for col, (caption, path) in enumerate(items[:columns]):
            x = 4 + col * (THUMB_PX + 4)
            try:
                with Image.open(path) as img:
                    thumb = img.convert("RGB")
            except OSError as exc:
                log.warning("contact sheet: cannot read %s: %s", path, exc)
                continue
            if max(thumb.size) > THUMB_PX:
                thumb.thumbnail((THUMB_PX, THUMB_PX))
            elif max(thumb.size) < THUMB_PX:  # tiny-model images: enlarge without smoothing
                scale = THUMB_PX / max(thumb.size)
                size = (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale)))
                thumb = thumb.resize(size, Image.Resampling.NEAREST)
            sheet.paste(thumb, (x, y))
            draw.text((x, y + thumb.height + 2), caption, fill="black")
        y += cell
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
