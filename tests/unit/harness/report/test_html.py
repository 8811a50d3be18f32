"""The report pages as a reader sees them: rendered by headless Chromium (Debian's package).

For each page, a copy with a small probe script is loaded with ``--dump-dom``: the script
writes the layout boxes of the headline tables, of every chart and of the methodology section
into the DOM, and the test checks each is laid out with a real size. Then the page itself (no
script) is screenshotted at its full height, and every one of those boxes, cut out of the
screenshot, must hold ink: a section that is hidden, empty, white on white or off the page
fails. The screenshots stay in pytest's tmp directory; their paths are printed.

Chromium runs headless, sandbox off (root), with a fresh profile, no network features, on
local files only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from synthetic_runs import make_run

from harness import report
from harness.gate.compare import compare_runs
from harness.report import comparison, history

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1", "--mute-audio")
WIDTH = 1280
MAX_HEIGHT = 16000

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                       reason="no chromium (Debian package `chromium`; scripts/setup.sh "
                              "installs it)"),
    pytest.mark.slow,
]

PROBE = """<script>
(function () {
  function box(el) {
    if (!el) return null;
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return {top: r.top + window.scrollY, left: r.left + window.scrollX, width: r.width,
            height: r.height, display: s.display, visibility: s.visibility,
            opacity: parseFloat(s.opacity), text: (el.innerText || el.textContent).length,
            svgText: el.querySelectorAll('text').length};
  }
  const all = (selector) => Array.from(document.querySelectorAll(selector)).map(box);
  const out = {
    headline: all('#headline table, #verdicts table, #gate table'),
    charts: all('#charts figure svg'),
    methodology: box(document.querySelector('#methodology')),
    height: document.documentElement.scrollHeight,
    width: document.documentElement.scrollWidth,
  };
  const pre = document.createElement('pre');
  pre.id = 'cvbench-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    profile.mkdir()
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def _layout(page: Path, tmp_path: Path) -> dict:
    """The probe's boxes of the page, as laid out by Chromium at WIDTH."""
    probe = tmp_path / f"probe-{page.stem}.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = _chromium(tmp_path, f"--window-size={WIDTH},900", "--dump-dom",
                       probe.resolve().as_uri())
    found = re.search(r'<pre id="cvbench-probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe did not run: {result.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def _screenshot(page: Path, tmp_path: Path, height: int) -> np.ndarray:
    from matplotlib.image import imread

    shot = tmp_path / f"{page.stem}.png"
    result = _chromium(tmp_path, f"--window-size={WIDTH},{height}", f"--screenshot={shot}",
                       page.resolve().as_uri())
    assert shot.is_file(), f"no screenshot: {result.stderr[-2000:]}"
    print(f"\nscreenshot of {page}: {shot}")
    return imread(shot)[..., :3]  # RGB, floats in 0..1


def _ink(pixels: np.ndarray, box: dict) -> float:
    """The share of non-background pixels inside ``box``."""
    top, left = int(box["top"]), int(box["left"])
    region = pixels[top:top + int(box["height"]), left:left + int(box["width"])]
    if not region.size:
        return 0.0
    return float((region.min(axis=2) < 0.6).mean())  # text and lines, not borders or bands


def _visible(box: dict | None, what: str, page_width: int) -> None:
    assert box is not None, f"{what}: missing"
    assert box["display"] != "none" and box["visibility"] == "visible" and box["opacity"] > 0, \
        f"{what}: hidden ({box})"
    assert box["width"] > 100 and box["height"] > 40, f"{what}: no size ({box})"
    assert box["left"] >= 0 and box["top"] >= 0 and box["left"] < page_width, \
        f"{what}: off the page ({box})"


def _check(page: Path, tmp_path: Path, charts: int, methodology: bool = True) -> np.ndarray:
    layout = _layout(page, tmp_path)
    assert layout["headline"], "no headline table"
    for index, box in enumerate(layout["headline"]):
        _visible(box, f"headline table {index}", layout["width"])
        assert box["text"] > 50, f"headline table {index}: no text"
    assert len(layout["charts"]) == charts
    for index, box in enumerate(layout["charts"]):
        _visible(box, f"chart {index}", layout["width"])
        assert box["width"] > 400 and box["svgText"] > 5, f"chart {index}: not drawn ({box})"
    if methodology:
        _visible(layout["methodology"], "methodology", layout["width"])
        assert layout["methodology"]["text"] > 500
    height = min(layout["height"], MAX_HEIGHT)
    pixels = _screenshot(page, tmp_path, height)
    assert pixels.shape[1] == WIDTH and pixels.shape[0] == height
    assert (pixels.min(axis=2) < 0.6).mean() > 0.01, "the screenshot is blank"
    boxes = [*layout["headline"], *layout["charts"],
             *([layout["methodology"]] if methodology else [])]
    for index, box in enumerate(boxes):
        if box["top"] + box["height"] <= height:
            assert _ink(pixels, box) > 0.005, f"box {index} is blank in the screenshot: {box}"
    return pixels


def test_run_page_in_chromium(tmp_path) -> None:
    run_dir = make_run(tmp_path / "results", "r", seed=1, repetitions=10)
    output = report.write_report([run_dir], reference={"container": "crun"})
    charts = len(list(output.glob("*.svg")))
    assert charts == 4
    _check(output / "index.html", tmp_path, charts)


def test_history_and_compare_pages_in_chromium(tmp_path) -> None:
    results_dir = tmp_path / "results"
    base = make_run(results_dir, "a", seed=1, repetitions=12, kinds=("startup",),
                    started_at="2026-11-27T10:00:00+00:00")
    cand = make_run(results_dir, "b", seed=2, repetitions=12, kinds=("startup",),
                    started_at="2026-11-27T11:00:00+00:00",
                    shifts={("crun", "start_to_ready_s"): 1.5})
    page = history.write_history(results_dir, tmp_path / "history", alpha=0.05) / "index.html"
    # one chart per result metric: start_to_ready_s and stop_s of the synthetic runs
    _check(page, tmp_path, charts=2, methodology=False)
    compared = compare_runs(base, cand, alpha=0.01)
    page = comparison.write_page(compared, base, cand, tmp_path / "compare.html")
    _check(page, tmp_path, charts=2)
