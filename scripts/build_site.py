#!/usr/bin/env python3
"""Builds the complete static site into one folder: the write-up (mkdocs build) plus the browser app.

    .venv/bin/python scripts/build_site.py [--models models/onnx] [--out build/site] [--results DIR]

Layout of the result: the MkDocs pages at the root; the app at ``app/`` (index.html, coi-sw.js, js/, css/), its
models at ``app/models/`` (manifest.json and the files it lists, nothing else) and onnxruntime-web's
wasm and WebGPU builds at ``app/ort/`` (the ES module entries and the wasm files their loaders fetch), all served
from the same origin: the site loads nothing from anywhere else. ``--results`` is the results folder
the write-up is rendered from (default: ``results``, or $MASKLENS_RESULTS).
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
SITE_SOURCE = REPO / "site"
ORT_DIST = SITE_SOURCE / "node_modules" / "onnxruntime-web" / "dist"
# The ESM entries of the wasm-only build and of the WebGPU build (for browsers with a GPU adapter, see
# site/js/worker.js), and what their loaders import and fetch.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
             "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
# coi-sw.js: the service worker that makes the app cross-origin isolated (threads), at the app's root so
# that its scope is the app.
APP_FILES = ("index.html", "coi-sw.js")
APP_DIRS = ("js", "css")


def build_docs(out: Path, results: Path | None) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    if results is not None:
        env["MASKLENS_RESULTS"] = str(results.resolve())
    mkdocs = Path(sys.executable).with_name("mkdocs")
    command = [str(mkdocs) if mkdocs.exists() else "mkdocs", "build", "--strict", "--config-file",
               str(REPO / "mkdocs.yml"), "--site-dir", str(out.resolve())]
    subprocess.run(command, cwd=REPO, env=env, check=True)


def copy_models(models: Path, target: Path) -> dict:
    manifest_path = models / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    target.mkdir(parents=True)
    for name in manifest["files"]:
        shutil.copy2(models / name, target / name)
    shutil.copy2(manifest_path, target / "manifest.json")
    return manifest


def build(models: Path, out: Path, results: Path | None = None) -> Path:
    missing = [name for name in ORT_FILES if not (ORT_DIST / name).is_file()]
    if missing:
        raise SystemExit(f"onnxruntime-web is missing {missing} in {ORT_DIST}: run `npm ci` in site/")
    if not (models / "manifest.json").is_file():
        raise SystemExit(f"no models: {models / 'manifest.json'} is missing "
                         "(export them with masklens-export, or pass --models)")
    build_docs(out, results)
    app = out / "app"
    if app.exists():
        shutil.rmtree(app)
    app.mkdir()
    for name in APP_FILES:
        shutil.copy2(SITE_SOURCE / name, app / name)
    for name in APP_DIRS:
        shutil.copytree(SITE_SOURCE / name, app / name)
    manifest = copy_models(models, app / "models")
    (app / "ort").mkdir()
    for name in ORT_FILES:
        shutil.copy2(ORT_DIST / name, app / "ort" / name)
    size = sum(f["bytes"] for f in manifest["files"].values())
    print(f"built {out}: write-up, app/ with {len(manifest['files'])} models ({size / 1e6:.1f} MB), "
          f"onnxruntime-web {len(ORT_FILES)} files")
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
