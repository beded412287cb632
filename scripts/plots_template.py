"""Write .dvc/plots/offline.html: DVC's plot page with the vega libraries inlined, so that
`dvc plots show` makes a page that draws its charts without the internet (DVC's own page loads
them from a CDN). The libraries come from the npm registry at the versions pinned in
.dvc/plots/package-lock.json (`npm ci` in scripts/setup.sh); .dvc/config names this file as
`plots.html_template`.

    python scripts/plots_template.py            # after npm ci
    python scripts/plots_template.py --online   # without npm: the page loads vega from a CDN
"""

import sys
from pathlib import Path

PLOTS = Path(__file__).resolve().parents[1] / ".dvc" / "plots"
LIBRARIES = ["vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js", "vega-embed/build/vega-embed.min.js"]
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>squatpose: DVC plots</title>
    {libraries}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page(libraries: list[str]) -> str:
    """The HTML template with each library's source in a <script> tag; DVC fills the `{plot_divs}`
    and `{refresh_tag}` placeholders (and, since the page has no `{scripts}`, adds no CDN links)."""
    scripts = "\n    ".join(f"<script>\n{source}\n</script>" for source in libraries)
    return PAGE.format(libraries=scripts, refresh_tag="{refresh_tag}", plot_divs="{plot_divs}")


def main() -> None:
    out = PLOTS / "offline.html"
    if sys.argv[1:] == ["--online"]:  # no npm: DVC's own page, which loads vega from a CDN
        write(out, PAGE.format(libraries="{scripts}", refresh_tag="{refresh_tag}", plot_divs="{plot_divs}"))
        return
    sources = []
    for name in LIBRARIES:
        path = PLOTS / "node_modules" / name
        if not path.is_file():
            sys.exit(f"error: {path}: missing; run `npm ci --prefix {PLOTS}` (scripts/setup.sh does)")
        sources.append(path.read_text(encoding="utf-8").replace("</script", "<\\/script"))
    write(out, page(sources))


def write(out: Path, text: str) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
