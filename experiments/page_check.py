"""How a report page reads at a given window width in headless Chromium (issue #32: "the figures checked in
headless Chromium at 1280 px"): what overflows the page, how far each figure is scaled down, and the page as
screenshots to look at.

    python experiments/page_check.py docs/report-medium/index.html --width 1280 --out /tmp/page-check

Chromium opens a copy of the page (in a temporary folder, its ``img/`` paths resolved against the page's own
folder by a ``<base>``) with a script that measures, once
laid out: the document's width against the window's, every table wider than its box (it scrolls sideways),
and every figure's shown width against its own. ``--dump-dom`` hands the measurements back. A second run
takes a screenshot of the whole page, cut into pieces of ``--piece`` pixels (``OUT/page-NN.png``). Prints a
table and writes ``OUT/page-check.json``. Needs ``chromium`` on the PATH (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from retort.report.tables import table

MEASURE = """<script>
window.addEventListener("load", () => {
  const r = {window: window.innerWidth, page: document.documentElement.scrollWidth,
             height: document.documentElement.scrollHeight, tables: [], figures: []};
  document.querySelectorAll("div.scroll").forEach((d, i) => {
    const h = d.previousElementSibling && d.previousElementSibling.closest("h2,h3,p") ?
      d.previousElementSibling.textContent.slice(0, 60) : "";
    r.tables.push({index: i, box: d.clientWidth, table: d.scrollWidth, before: h});
  });
  document.querySelectorAll("img").forEach(im => r.figures.push(
    {src: im.getAttribute("src"), natural: im.naturalWidth, shown: im.clientWidth}));
  const pre = document.createElement("pre"); pre.id = "page-check"; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"""


def chromium(*args: str, timeout: int = 180) -> str:
    """Run headless Chromium with ``args``; its standard output (a failed run ends the script, its stderr's end
    named)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        sys.exit("page_check: no chromium on the PATH (apt-get install chromium)")
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"]
    done = subprocess.run(base + list(args), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"page_check: chromium exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout


def measure(page: Path, width: int) -> dict:
    """The layout measured in Chromium at ``width``: a copy of the page with ``MEASURE`` in it, in a temporary
    folder (nothing is written beside the page)."""
    text = page.read_text(encoding="utf-8")
    text = text.replace("<head>", f'<head><base href="{page.resolve().parent.as_uri()}/">', 1)
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "index.html"
        probe.write_text(text.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
        dom = chromium("--dump-dom", f"--window-size={width},1000", probe.as_uri())
    found = re.search(r'<pre id="page-check">(.*?)</pre>', dom, re.S)
    if not found:
        sys.exit(f"page_check: Chromium gave back no measurement for {page}")
    return json.loads(html.unescape(found.group(1)))


def screenshots(page: Path, width: int, height: int, out: Path, piece: int) -> list[str]:
    """The whole page at ``width``, cut into pieces ``piece`` pixels high: their file names."""
    from PIL import Image  # noqa: PLC0415 (matplotlib's dependency; only this step needs it)

    shot = out / "page.png"
    shot.unlink(missing_ok=True)  # never cut up an earlier run's screenshot
    chromium(f"--screenshot={shot}", f"--window-size={width},{height + 20}", page.resolve().as_uri())
    image, names = Image.open(shot), []
    if image.height < height:
        print(f"page_check: the screenshot is {image.height} px high, the page {height} px: its end is not in it")
    for i, top in enumerate(range(0, image.height, piece)):
        name = f"page-{i:02d}.png"
        image.crop((0, top, width, min(image.height, top + piece))).save(out / name)
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> None:
    """Measure the page, take its screenshots, print what overflows and how far each figure is scaled."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("page", help="a report's index.html")
    p.add_argument("--width", type=int, default=1280, help="the window's width in pixels")
    p.add_argument("--piece", type=int, default=1400, help="the height of each screenshot piece")
    p.add_argument("--out", required=True, help="a folder for page-check.json and the screenshots")
    args = p.parse_args(argv)
    page = Path(args.page)
    if not page.is_file():
        p.error(f"{page}: no such page")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    m = measure(page, args.width)
    m["screenshots"] = screenshots(page, args.width, m["height"], out, args.piece)
    m["overflowing_tables"] = [t for t in m["tables"] if t["table"] > t["box"]]
    print(f"{page} at {args.width} px: page {m['page']} px wide, {m['height']} px high; "
          f"{len(m['overflowing_tables'])} of {len(m['tables'])} tables wider than the page")  # fmt: skip
    rows = [[t["index"], t["before"], t["box"], t["table"]] for t in m["overflowing_tables"]]
    if rows:
        print(table(["table", "text before it", "box px", "table px"], rows))
    print(table(["figure", "own px", "shown px", "scale"],
                [[f["src"], f["natural"], f["shown"], f"{f['shown'] / f['natural']:.2f}" if f["natural"] else "-"]
                 for f in m["figures"]]))  # fmt: skip
    (out / "page-check.json").write_text(json.dumps(m, indent=2) + "\n")
    print(f"wrote {out / 'page-check.json'} and {len(m['screenshots'])} screenshot pieces")


if __name__ == "__main__":
    main()
