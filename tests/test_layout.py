"""The house plan: the torch-free core imports nothing of the stages, no package imports another in a circle,
no module or function outgrows its job, and the one ``masklens`` command reaches every stage."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from masklens.commands import COMMANDS, main

from .conftest import REPO, shared_data_or_skip

PACKAGES = ("masklens", "training", "export", "studies")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
SIZE_REASON = "# size:"  # a first-lines comment that says why a file or its function must stay long


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for package in PACKAGES
        for path in sorted((REPO / package).glob("*.py"))
    }


def imports_of(name: str, path: Path) -> set[str]:
    """The project modules a module imports anywhere in its body (lazy imports in functions included)."""
    package = name.split(".")[0] if path.name != "__init__.py" else name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = f"{package}.{base}" if base else package
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    known = modules()
    return {module for module in found if module in known and module != name}


def test_the_core_package_imports_no_stage_and_no_torch():
    for name, path in modules().items():
        if not name.startswith("masklens"):
            continue
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
        }
        assert not imported & {"training", "export", "studies", "torch", "torchvision", "facenet_pytorch"}, name


def test_no_import_circle():
    graph = {name: imports_of(name, path) for name, path in modules().items()}
    packages = {
        p: {m.split(".")[0] for name in graph if name.split(".")[0] == p for m in graph[name]} - {p} for p in PACKAGES
    }
    # The data flows one way: the core, then training, then export; the studies read any of them.
    assert packages["masklens"] == set()
    assert packages["training"] <= {"masklens"}
    assert packages["export"] <= {"masklens", "training"}
    assert not any("studies" in packages[p] for p in ("masklens", "training", "export"))

    def cycle_from(start, node, path):
        for nxt in graph[node]:
            if nxt == start:
                return [*path, nxt]
            if nxt not in path:
                found = cycle_from(start, nxt, [*path, nxt])
                if found:
                    return found
        return None

    for name in graph:
        assert cycle_from(name, name, [name]) is None, cycle_from(name, name, [name])


def test_cycle_check_sees_a_circle(tmp_path, monkeypatch):
    """imports_of reads relative and lazy imports, so a circle written that way is seen."""
    (tmp_path / "training").mkdir()
    first, second = tmp_path / "training" / "a.py", tmp_path / "training" / "b.py"
    first.write_text("def f():\n    from .b import g\n")
    second.write_text("from training.a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert imports_of("training.a", first) == {"training.b"}
    assert imports_of("training.b", second) == {"training.a"}


def test_files_and_functions_stay_small():
    too_long = []
    for path in sorted(p for package in (*PACKAGES, "scripts", "docs_hooks") for p in (REPO / package).glob("*.py")):
        text = path.read_text()
        if any(line.startswith(SIZE_REASON) for line in text.splitlines()[:5]):
            continue
        lines = len(text.splitlines())
        if lines > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(REPO)}: {node.name} {length} lines")
    assert not too_long, too_long


def test_masklens_help_lists_every_command_with_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_its_config_flags(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: masklens {command}" in capsys.readouterr().out


def test_an_unknown_command_is_named():
    result = subprocess.run([sys.executable, "-m", "masklens", "trian"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "no command 'trian'" in result.stderr and "train" in result.stderr


def test_masklens_predict_classifies_a_photo_without_importing_torch(tmp_path):
    """The CLI organisations run on folders of photos needs onnxruntime, numpy and Pillow: -X importtime
    lists every module the real command imported."""
    photo = sorted(shared_data_or_skip("real-photos", "test", "with_mask").iterdir())[0]
    out = tmp_path / "predictions.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "masklens",
            "predict",
            str(photo),
            "--models",
            str(REPO / "models" / "onnx"),
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "onnxruntime" in imported and "masklens" in imported
    assert not imported & {"torch", "torchvision", "facenet_pytorch", "training", "export", "studies"}
    assert result.returncode in (0, 1) and '"file"' in out.read_text(), result.stderr[-2000:]
