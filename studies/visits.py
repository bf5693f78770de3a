"""What a visitor downloads: a first and a second visit to the app, in Debian's chromium, until the first
photo's result is drawn (``masklens benchmark`` runs it on a built site; a measurement, never a test).

Each visit opens ``/app/``, waits until the models are ready, sets a photo on the file input and waits for
the result. Bytes are what the server sent (response bodies and headers, as Chromium counts them), per file
and in all; the second visit is a new page in the same browser profile, whose HTTP cache and Cache Storage
the first one filled. Requests are counted for the whole browser context, so those the app's service worker
makes on the page's behalf count too (the page's own request that the service worker answers counts 0 bytes).
"""

from __future__ import annotations

import time
from pathlib import Path

from .chromium import CHROMIUM, CHROMIUM_ARGS, serving

TIMEOUT_MS = 300_000


def visit(context, base: str, photo: Path) -> dict:
    page = context.new_page()
    sent: dict[str, int] = {}

    def count(request) -> None:
        sizes = request.sizes()
        name = request.url.removeprefix(base)
        sent[name] = sent.get(name, 0) + sizes["responseBodySize"] + sizes["responseHeadersSize"]

    context.on("requestfinished", count)
    try:
        started = time.perf_counter()
        page.goto(f"{base}/app/")
        page.wait_for_selector("body[data-state=ready], body[data-state=error]", state="attached", timeout=TIMEOUT_MS)
        ready = time.perf_counter() - started
        if page.get_attribute("body", "data-state") != "ready":
            raise SystemExit(f"the app did not start: {page.inner_text('#error')}")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("body[data-checks='1']", state="attached", timeout=TIMEOUT_MS)
        result = time.perf_counter() - started
    finally:
        page.close()
        context.remove_listener("requestfinished", count)
    return {
        "bytes": sum(sent.values()),
        "requests": len(sent),
        "largest": dict(sorted(sent.items(), key=lambda item: -item[1])[:8]),
        "seconds_to_ready": round(ready, 2),
        "seconds_to_first_result": round(result, 2),
    }


def first_and_second_visit(browser, base: str, photo: Path) -> dict:
    """A first visit (empty cache) and a second visit (same profile) to the app served at ``base``."""
    context = browser.new_context()
    try:
        return {"photo": photo.name, "first": visit(context, base, photo), "second": visit(context, base, photo)}
    finally:
        context.close()


def measure_visits(site: Path, photo: Path) -> dict:
    """``first_and_second_visit`` to the built site, served locally, in a new Chromium."""
    from playwright.sync_api import sync_playwright

    with serving(site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            return first_and_second_visit(browser, base, photo)
        finally:
            browser.close()
