"""MkDocs hook: fills the site's stub pages from ``docs/templates/*.md.j2`` and ships the results figures.

A page whose front matter says ``rendered_from: NAME.md.j2`` is a stub: its body is replaced, in
``on_page_markdown``, by ``docs/templates/NAME.md.j2`` rendered with ``studies.report`` (the Jinja
environment, filters and context ``masklens report`` uses) from the results folder. Nothing is written
into ``docs/``, so no generated page can be committed by mistake.

The results folder is ``extra.masklens.results_dir`` in mkdocs.yml (relative to mkdocs.yml), which
takes the environment variable ``MASKLENS_RESULTS`` when it is set. It must hold
``default/metrics-holdout.json`` and ``framing.json``, or the build fails; every other artifact is
optional and the templates leave out what is missing.

Templates link figures as ``../results/<preset>/figures/<name>.png``, relative to ``docs/`` as a page
rendered by ``masklens report`` would. Here every ``<results>/*/figures/*.png`` is added to the site as
``results/<preset>/figures/<name>.png``, and ``<results>/figures/*.png`` (figures of no one preset) as
``results/figures/<name>.png``; those links are pointed at them, so MkDocs checks each one.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File
from mkdocs.utils.meta import get_data

from studies.report import load_context, render_template

log = logging.getLogger("mkdocs.hooks.masklens")

TEMPLATE_SUFFIX = ".md.j2"
STUB_KEY = "rendered_from"
REQUIRED = ("default/metrics-holdout.json", "framing.json")
SITE_FIGURES = "results"  # where results/<preset>/figures/*.png land in the site
_FIGURE_LINK = re.compile(r"\]\(\.\./results/")

_rendered: dict[str, str] = {}


def results_dir(config) -> Path:
    configured = (config.extra.get("masklens") or {}).get("results_dir") or "results"
    return (Path(config.config_file_path).parent / configured).resolve()


def on_pre_build(config) -> None:
    """Renders every template up front, so a missing artifact or a template error stops the build."""
    results = results_dir(config)
    missing = [name for name in REQUIRED if not (results / name).is_file()]
    if missing:
        raise PluginError(f"masklens: missing required results in {results}: {', '.join(missing)}")
    context = load_context(results)
    _rendered.clear()
    for template in sorted((Path(config.docs_dir) / "templates").glob("*" + TEMPLATE_SUFFIX)):
        try:
            _rendered[template.name] = render_template(template, context)
        except Exception as error:
            raise PluginError(f"masklens: cannot render {template.name} from {results}: {error!r}") from error
    log.info("masklens: rendered %d template(s) from %s", len(_rendered), results)


def on_files(files, config):
    """Checks that stubs and templates pair up one to one; adds the results figures to the site."""
    stubs: dict[str, list[str]] = {}
    for file in files.documentation_pages():
        name = get_data(file.content_string)[1].get(STUB_KEY)
        if name is not None:
            stubs.setdefault(name, []).append(file.src_uri)
    problems = [
        f"{', '.join(pages)} want(s) {name!r}, which is not in docs/templates"
        for name, pages in stubs.items()
        if name not in _rendered
    ]
    problems += [
        f"{name!r} is rendered by {len(pages)} pages: {', '.join(pages)}"
        for name, pages in stubs.items()
        if len(pages) > 1
    ]
    problems += [f"no page has '{STUB_KEY}: {name}'" for name in _rendered if name not in stubs]
    if problems:
        raise PluginError("masklens: " + "; ".join(problems))
    results = results_dir(config)
    for png in sorted([*results.glob("figures/*.png"), *results.glob("*/figures/*.png")]):
        folder = png.relative_to(results).parent.as_posix()
        files.append(File.generated(config, f"{SITE_FIGURES}/{folder}/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    name = page.meta.get(STUB_KEY)
    if name is None:
        return markdown
    here = posixpath.dirname(page.file.src_uri) or "."
    figures = posixpath.relpath(SITE_FIGURES, here)
    return _FIGURE_LINK.sub(f"]({figures}/", _rendered[name])


def on_serve(server, config, builder):
    server.watch(str(results_dir(config)))
    return server
