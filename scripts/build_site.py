#!/usr/bin/env python3
"""Builds the complete static site into one folder: the write-up (mkdocs build) plus the browser app.

    .venv/bin/python scripts/build_site.py [--models models/onnx] [--out build/site] [--results DIR]

Layout of the result: the MkDocs pages at the root; the app at ``app/`` (index.html, coi-sw.js, js/, css/, and
masklens/manifest.schema.json as ``app/js/manifest.schema.json``: the schema site/js/manifest.js checks the manifest
against, part of the code, so a models folder is always judged by the version this app reads), its
models at ``app/models/`` (manifest.json and the files it lists, nothing else) and onnxruntime-web's
wasm and WebGPU builds at ``app/ort/`` (the ES module entries and the wasm files their loaders fetch), all served
from the same origin: the site loads nothing from anywhere else. ``--results`` is the results folder
the write-up is rendered from (default: ``results``, or $MASKLENS_RESULTS). A manifest that does not follow
the schema stops the build, naming the field (masklens.manifest.validate), rather than giving a site that
refuses to load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # masklens.manifest (standard library only, no torch) when run as a script

from masklens.manifest import SCHEMA_PATH, ManifestError, validate  # noqa: E402

SITE_SOURCE = REPO / "site"
ORT_DIST = SITE_SOURCE / "node_modules" / "onnxruntime-web" / "dist"
# The ESM entries of the wasm-only build and of the WebGPU build (for browsers with a GPU adapter, see
# site/js/worker.js), and what their loaders import and fetch.
ORT_FILES = (
    "ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
)
# coi-sw.js: the service worker that makes the app cross-origin isolated (threads), at the app's root so
# that its scope is the app.
APP_FILES = ("index.html", "coi-sw.js")
APP_DIRS = ("js", "css")
# Where the app's worker fetches the schema from (site/js/manifest.js's SCHEMA_URL), under app/.
SCHEMA_TARGET = Path("js") / "manifest.schema.json"


def build_docs(out: Path, results: Path | None) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    if results is not None:
        env["MASKLENS_RESULTS"] = str(results.resolve())
    mkdocs = Path(sys.executable).with_name("mkdocs")
    command = [
        str(mkdocs) if mkdocs.exists() else "mkdocs",
        "build",
        "--strict",
        "--config-file",
        str(REPO / "mkdocs.yml"),
        "--site-dir",
        str(out.resolve()),
    ]
    subprocess.run(command, cwd=REPO, env=env, check=True)


def read_manifest(models: Path) -> dict:
    """The models folder's manifest, validated against the schema the app will check it with."""
    manifest_path = models / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        validate(manifest)
    except (ValueError, ManifestError) as error:  # json.JSONDecodeError is a ValueError
        raise SystemExit(f"{manifest_path} cannot go into the site: {error}") from None
    return manifest


def copy_models(models: Path, manifest: dict, target: Path) -> None:
    manifest_path = models / "manifest.json"
    target.mkdir(parents=True)
    for name in manifest["files"]:
        shutil.copy2(models / name, target / name)
    shutil.copy2(manifest_path, target / "manifest.json")


def read_sources(models: Path) -> dict:
    """The models' manifest, once onnxruntime-web's files and the manifest are known to be there and valid."""
    missing = [name for name in ORT_FILES if not (ORT_DIST / name).is_file()]
    if missing:
        raise SystemExit(f"onnxruntime-web is missing {missing} in {ORT_DIST}: run `npm ci` in site/")
    if not (models / "manifest.json").is_file():
        raise SystemExit(
            f"no models: {models / 'manifest.json'} is missing (export them with masklens export, or pass --models)"
        )
    return read_manifest(models)


def build(models: Path, out: Path, results: Path | None = None) -> Path:
    manifest = read_sources(models)  # before the write-up's minutes of building
    build_docs(out, results)
    return build_app(models, out, manifest, results)


def explanations_summary(results: Path) -> dict:
    """What the app's line under the heatmap needs of ``results``/explanations.json (masklens explain): per
    layer and kind of face, the pointing game's hit rate and face count; empty when it was not measured."""
    path = results / "explanations.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    return {
        "split": report["split"],
        "layers": {
            layer: {
                group: {"rate": scores["layers"][layer]["gradcam"]["hit"]["rate"], "faces": scores["faces"]}
                for group, scores in report["pointing"].items()
            }
            for layer in report["layers"]
        },
    }


def build_app(models: Path, out: Path, manifest: dict | None = None, results: Path | None = None) -> Path:
    """The app alone at ``out``/app, without the write-up (enough for checks of the app alone); ``results``
    (default: results/) gives the heatmaps' measured hit rates, site/js/explanations.js's numbers."""
    manifest = manifest or read_sources(models)
    app = out / "app"
    if app.exists():
        shutil.rmtree(app)
    app.mkdir(parents=True)
    for name in APP_FILES:
        shutil.copy2(SITE_SOURCE / name, app / name)
    for name in APP_DIRS:
        shutil.copytree(SITE_SOURCE / name, app / name)
    shutil.copy2(SCHEMA_PATH, app / SCHEMA_TARGET)
    copy_models(models, manifest, app / "models")
    summary = explanations_summary(results or REPO / "results")
    (app / "explanations.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (app / "ort").mkdir()
    for name in ORT_FILES:
        shutil.copy2(ORT_DIST / name, app / "ort" / name)
    size = sum(f["bytes"] for f in manifest["files"].values())
    print(
        f"built {app}: the app with {len(manifest['files'])} models ({size / 1e6:.1f} MB), "
        f"onnxruntime-web {len(ORT_FILES)} files"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=REPO / "models" / "onnx", help="exported models folder")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "site", help="site folder (replaced)")
    parser.add_argument("--results", type=Path, default=None, help="results folder for the write-up")
    args = parser.parse_args(argv)
    build(args.models, args.out, args.results)


if __name__ == "__main__":
    main()
