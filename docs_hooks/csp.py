"""MkDocs hook: a Content-Security-Policy on every docs page, as a meta tag (a static host sends no headers).

The same rules as the app's (site/index.html): everything from the site's own origin only (scripts, the search
worker, its index fetch, styles, images), no plugins, no forms. MkDocs Material writes three small scripts inline
into each page (the page's scope for its local storage, the colour scheme, the open tab): those are allowed by
their sha256, computed here from the page as built, since the first names the page's depth. A script inside a
page's own content is not among them, so an inline script in Markdown (or one injected later) does not run.
"""

from __future__ import annotations

import base64
import hashlib
import re

from mkdocs.exceptions import PluginError

POLICY = (
    "default-src 'self'; script-src 'self' {hashes}; worker-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; object-src 'none'; base-uri 'self'; form-action 'none'"
)
CHARSET = '<meta charset="utf-8">'
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def with_policy(output: str, authored: str, where: str) -> str:
    """The page ``output`` with the policy after its charset; ``authored``: the page's own content, whose
    inline scripts get no hash."""
    if CHARSET not in output:
        raise PluginError(f"masklens: no {CHARSET} in {where} to put the Content-Security-Policy after")
    excluded = set(_INLINE_SCRIPT.findall(authored))
    hashes = sorted({_hash(script) for script in _INLINE_SCRIPT.findall(output) if script not in excluded})
    policy = POLICY.format(hashes=" ".join(hashes))
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
    return output.replace(CHARSET, f"{CHARSET}\n    {meta}", 1)


def on_post_page(output: str, page, config) -> str:
    return with_policy(output, page.content or "", page.file.src_uri)


def on_post_template(output: str, template_name: str, config) -> str:
    """The theme's own pages (404.html); sitemap.xml is no page."""
    return with_policy(output, "", template_name) if template_name.endswith(".html") else output
