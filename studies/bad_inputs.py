"""The bad-input corpus: the odd and broken files people give the checker, each with the outcome it must get,
run through ``masklens predict`` and through the app in Chromium: ``masklens bad-inputs``.

    masklens bad-inputs --site build/site --out results/bad-inputs.json

The corpus (``studies.bad_input_corpus``) is written at run time into a temporary folder. The site's own
models (``app/models`` of the built site) run on both sides.

The CLI runs once over the whole folder (a folder run must report each bad file and go on); the page gets
every file through its file input, each followed by a good photo that must still get its answer. Each side's
outcome is ``{"outcome": "refused" | "no face" | "faces" | "no answer", "message", "faces", "cant_tell",
"image_size", "boxes"}``; ``judge`` holds it to the entry's ``Expected``. ``results/bad-inputs.json`` holds,
per file, what it is, what is expected, both outcomes and whether both pass; the Limitations page renders it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from masklens.cli import parse_config
from masklens.files import write_json

from .bad_input_corpus import (
    ENTRIES,
    FACES,
    LIKE_IOU,
    NO_ANSWER,
    NO_FACE,
    REFERENCE,
    REFUSED,
    Entry,
    Expected,
    write_corpus,
)
from .chromium import CHROMIUM, CHROMIUM_ARGS, serving

# What a message shown to a person must not look like: a stack trace, an exception's name, a leaked JS value.
NOT_PLAIN = re.compile(r"Traceback|\bat \S+:\d+|\b[A-Z]\w*(Error|Exception)\b|undefined|\[object ")
ANSWER_TIMEOUT_MS = 180_000


# --- Running it -----------------------------------------------------------------------------------------------


def _faces_outcome(image_size: list[int], faces: list[dict]) -> dict:
    return {
        "outcome": FACES,
        "message": None,
        "faces": len(faces),
        "cant_tell": [face["cant_tell"] for face in faces],
        "image_size": image_size,
        "boxes": [[round(float(v), 1) for v in face["box"]] for face in faces],
    }


def _refusal(outcome: str, message: str | None) -> dict:
    return {"outcome": outcome, "message": message, "faces": 0, "cant_tell": [], "image_size": None, "boxes": []}


def cli_outcomes(folder: Path, models: Path, work: Path) -> tuple[dict[str, dict], subprocess.CompletedProcess]:
    """``masklens predict`` over the folder, in a process of its own: each file's outcome, by name."""
    out = work / "predictions.jsonl"
    command = [sys.executable, "-m", "masklens", "predict", str(folder), "--models", str(models), "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    outcomes = {}
    for line in out.read_text().splitlines() if out.exists() else []:
        record = json.loads(line)
        name = Path(record["file"]).name
        if record["ok"]:
            outcomes[name] = _faces_outcome(record["image_size"], record["faces"])
        elif record["error"].startswith("no face found"):
            outcomes[name] = _refusal(NO_FACE, record["error"])
        else:
            outcomes[name] = _refusal(REFUSED, record["error"])
    return outcomes, run


def _page_outcome(page, path: Path) -> dict:
    """Sets the file on the page's input and waits for the check to finish: the page's outcome."""
    done = int(page.get_attribute("body", "data-checks") or 0) + 1
    page.set_input_files("#file", str(path))
    try:
        page.wait_for_selector(f"body[data-checks='{done}']", state="attached", timeout=ANSWER_TIMEOUT_MS)
    except Exception:  # playwright's TimeoutError: a spinner that never ends
        return _refusal(NO_ANSWER, page.inner_text("#status"))
    last = page.evaluate("window.__masklens_last")
    if last["state"] == "error":
        shown = page.inner_text("#error") if page.is_visible("#error") else ""
        return _refusal(REFUSED, shown)  # what the person sees: nothing if the message is not shown
    if last["state"] == "noface":
        return _refusal(NO_FACE, page.inner_text("#status"))
    return _faces_outcome([last["photo"]["width"], last["photo"]["height"]], last["faces"])


def browser_outcomes(browser, base: str, folder: Path, entries: list[Entry], follow_up: Entry) -> dict[str, dict]:
    """Every entry through the app's file input on one page, each followed by ``follow_up`` (a good photo),
    whose outcome goes in the entry's as ``then``; ``page_errors``: uncaught errors and console errors."""
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.goto(f"{base}/app/")
        page.wait_for_selector("body[data-state=ready]", state="attached", timeout=ANSWER_TIMEOUT_MS)
        outcomes = {}
        for entry in entries:
            errors.clear()
            outcome = _page_outcome(page, folder / entry.file)
            outcome["then"] = _page_outcome(page, folder / follow_up.file)
            outcome["page_errors"] = list(errors)
            outcomes[entry.file] = outcome
        return outcomes
    finally:
        context.close()


def _iou(a: list[float], b: list[float]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def judge(expect: Expected, outcome: dict, outcomes: dict[str, dict], max_side: int) -> list[str]:
    """Why an outcome is not the expected one (empty: it is); ``outcomes``: the same side's, by file."""
    if outcome["outcome"] != expect.outcome:
        return [f"expected {expect.outcome}, got {outcome['outcome']}: {outcome['message']}"]
    wrong = []
    if expect.outcome == REFUSED:
        message = outcome["message"] or ""
        if not message:
            wrong.append("refused without a message shown")
        wrong += [f"the message does not say {word!r}" for word in expect.words if word.lower() not in message.lower()]
        if NOT_PLAIN.search(message):
            wrong.append(f"the message is not plain words: {message!r}")
    if expect.outcome == FACES:
        if outcome["faces"] != expect.faces:
            wrong.append(f"expected {expect.faces} faces, got {outcome['faces']}")
        if expect.cant_tell and any(reason != expect.cant_tell for reason in outcome["cant_tell"]):
            wrong.append(f"expected can't tell ({expect.cant_tell}), got {outcome['cant_tell']}")
        if expect.scaled and (outcome["image_size"] is None or max(outcome["image_size"]) != max_side):
            wrong.append(f"expected scaled to {max_side} pixels, got {outcome['image_size']}")
        if expect.like:
            reference = outcomes.get(expect.like)
            if reference is None or reference["outcome"] != FACES:
                wrong.append(f"no face in {expect.like} to compare with")
            elif outcome["image_size"] != reference["image_size"]:
                wrong.append(f"size {outcome['image_size']}, not {expect.like}'s {reference['image_size']}")
            elif outcome["boxes"] and _iou(outcome["boxes"][0], reference["boxes"][0]) < LIKE_IOU:
                wrong.append(f"face at {outcome['boxes'][0]}, not where {expect.like}'s is {reference['boxes'][0]}")
    return wrong


def judge_browser(expect: Expected, outcome: dict, outcomes: dict[str, dict], follow_up: Expected, max_side: int):
    """``judge`` plus what the page owes after any input: no uncaught error, and the next good photo answered."""
    wrong = judge(expect, outcome, outcomes, max_side)
    wrong += [f"page error: {error}" for error in outcome["page_errors"]]
    then = judge(follow_up, outcome["then"], {}, max_side)
    if then:
        wrong.append("the next good photo failed: " + "; ".join(then))
    return wrong


def describe(outcome: dict) -> str:
    """An outcome in a few words, for the table."""
    if outcome["outcome"] != FACES:
        return outcome["outcome"] if outcome["outcome"] == NO_FACE else f"{outcome['outcome']}: {outcome['message']}"
    text = f"{outcome['faces']} face{'s' if outcome['faces'] != 1 else ''}"
    unsure = {reason for reason in outcome["cant_tell"] if reason}
    if unsure:
        text += ", can't tell (" + ", ".join(sorted(unsure)).replace("_", " ") + ")"
    return text + f", {outcome['image_size'][0]} x {outcome['image_size'][1]}"


def run_corpus(site: Path, data: Path, browser=None) -> dict:
    """Writes the corpus, runs it through the CLI and the page of the built ``site``, and judges both.
    ``browser``: a launched Playwright Chromium, or None to launch one."""
    models = site / "app" / "models"
    manifest = json.loads((models / "manifest.json").read_text())
    max_side = manifest["input_limits"]["max_side"]
    faces = data / "real-photos" / "test" / "without_mask"
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "corpus"
        entries, left_out = write_corpus(folder, faces if faces.is_dir() else None)
        cli, run = cli_outcomes(folder, models, Path(work))
        by_file = {entry.file: entry for entry in entries}
        follow_up = by_file.get(REFERENCE) or by_file["no-face.png"]
        with serving(site) as base:
            if browser is None:
                from playwright.sync_api import sync_playwright

                with sync_playwright() as playwright:
                    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                    page = browser_outcomes(launched, base, folder, entries, follow_up)
                    version = launched.version
                    launched.close()
            else:
                page = browser_outcomes(browser, base, folder, entries, follow_up)
                version = browser.version
    rows = []
    for entry in entries:
        cli_wrong = judge(entry.expect, cli.get(entry.file, _refusal(NO_ANSWER, None)), cli, max_side)
        page_wrong = judge_browser(entry.expect, page[entry.file], page, follow_up.expect, max_side)
        rows.append(
            {
                "file": entry.file,
                "what": entry.what,
                "expected": entry.expected,
                "cli": {**cli.get(entry.file, _refusal(NO_ANSWER, None)), "failures": cli_wrong},
                "browser": {**page[entry.file], "failures": page_wrong},
                "cli_text": describe(cli.get(entry.file, _refusal(NO_ANSWER, None))),
                "browser_text": describe(page[entry.file]),
                "pass": not cli_wrong and not page_wrong,
            }
        )
    return {
        "model_version": manifest["model_version"],
        "input_limits": manifest["input_limits"],
        "chromium": version,
        "cli_exit_status": run.returncode,
        "cli_stderr_lines": len(run.stderr.splitlines()),
        "entries": rows,
        "left_out": [
            {"file": entry.file, "what": entry.what, "reason": left_out[entry.file]}
            for entry in ENTRIES
            if entry.file in left_out
        ],
        "passed": sum(row["pass"] for row in rows),
    }


@dataclass(frozen=True)
class BadInputsConfig:
    site: str = field(
        default="build/site", metadata={"help": "built site (scripts/build_site.py): its app/models run on both sides"}
    )
    data: str = field(default="../shared/data", metadata={"help": "root holding real-photos/test"})
    out: str = "results/bad-inputs.json"


def main(argv: list[str] | None = None) -> None:
    config = parse_config(BadInputsConfig, argv, description=__doc__.splitlines()[0])
    result = run_corpus(Path(config.site), Path(config.data))
    write_json(config.out, result)
    for row in result["entries"]:
        failures = row["cli"]["failures"] + row["browser"]["failures"]
        print(f"{'pass' if row['pass'] else 'FAIL'}  {row['file']:<20} {'; '.join(failures)}")
    for item in result["left_out"]:
        print(f"left out  {item['file']}: {item['reason']}")
    print(f"{result['passed']} of {len(result['entries'])} pass; wrote {config.out}")
    sys.exit(0 if result["passed"] == len(result["entries"]) else 1)
