"""``onto functions build``: a folder that the Functions Framework serves and
``gcloud functions deploy`` / ``firebase deploy`` deploy."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from onto_core.config import OntoConfig, load_config

__all__ = ["FunctionTarget", "build_function", "function_targets"]

CONFIG_NAME = "onto.yaml"
_SOURCES = {"cloud_event": "cloud_event", "http_function": "http"}


@dataclass(frozen=True)
class FunctionTarget:
    """One function of the folder: ``name`` (the ``--target``) runs ``pipeline``."""

    name: str
    pipeline: str
    kind: str  # "cloud_event" or "http"
    collections: tuple[str, ...] = ()


def function_targets(config: OntoConfig) -> list[FunctionTarget]:
    """The config's pipelines as functions; ``ValueError`` naming a pipeline that has a
    source no function can feed."""
    targets = []
    for name, pipeline in config.pipelines.items():
        kind = _SOURCES.get(pipeline.source.type)
        if kind is None:
            raise ValueError(
                f"pipeline {name!r} ({pipeline.source.path}): a function is fed by its"
                f" invocations, so its source must be one of {', '.join(_SOURCES)},"
                f" not {pipeline.source.type!r}"
            )
        collections = tuple(getattr(pipeline.source.config, "collections", ()) or ())
        targets.append(FunctionTarget(_identifier(name), name, kind, collections))
    return targets


def _identifier(name: str) -> str:
    cleaned = re.sub(r"\W", "_", name)
    return cleaned if cleaned[:1].isalpha() else f"f_{cleaned}"


def _requirements(config: OntoConfig) -> list[str]:
    """The distributions the config's components come from, pinned to what is installed."""
    wanted = {"onto-core", "onto-functions", "functions-framework"}
    owners = importlib.metadata.packages_distributions()
    specs = []
    for pipeline in config.pipelines.values():
        specs += [pipeline.source, *pipeline.processors, *pipeline.sinks]
        if pipeline.dead_letter is not None:
            specs.append(pipeline.dead_letter)
    if config.datastore is not None:
        specs.append(config.datastore)
    for spec in specs:
        top = spec.info.cls.__module__.split(".")[0]
        # An editable install may not map its modules: onto_x comes from onto-x.
        wanted.update(owners.get(top) or [top.replace("_", "-")])
    pinned = []
    for dist in sorted(wanted):
        try:
            pinned.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(dist)
    return pinned


def _main_py(config_file: str, targets: list[FunctionTarget]) -> str:
    lines = [
        f'"""Cloud Functions entry points of {config_file}, written by `onto functions build`.',
        "",
        "Targets: "
        + ", ".join(f"{t.name} ({t.kind}, pipeline {t.pipeline!r})" for t in targets)
        + ".",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "import functions_framework",
        "",
        "from onto_functions import FunctionHost",
        "",
        f'host = FunctionHost.from_file(__file__, "{CONFIG_NAME}")',
    ]
    for target in targets:
        lines += ["", ""]
        if target.kind == "cloud_event":
            lines += [
                "@functions_framework.cloud_event",
                f"def {target.name}(event: Any) -> None:",
                f'    host.handle_event("{target.pipeline}", event)',
            ]
        else:
            lines += [
                "@functions_framework.http",
                f"def {target.name}(request: Any) -> Any:",
                f'    return host.handle_request("{target.pipeline}", request)',
            ]
    return "\n".join(lines) + "\n"


def _firebase_main_py(config_file: str, targets: list[FunctionTarget]) -> str:
    lines = [
        f'"""Firebase Functions entry points of {config_file}, written by'
        " `onto functions build --firebase`.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "from firebase_functions import firestore_fn, https_fn",
        "",
        "from onto_functions import FunctionHost",
        "",
        f'host = FunctionHost.from_file(__file__, "{CONFIG_NAME}")',
    ]
    for target in targets:
        if target.kind == "cloud_event":
            for collection in target.collections:
                suffix = _identifier(collection.replace("/{", "_").replace("}", ""))
                lines += [
                    "",
                    "",
                    f'@firestore_fn.on_document_written(document="{_pattern(collection)}")',
                    f"def {target.name}_{suffix}(event: Any) -> None:",
                    f'    host.handle_firebase_event("{target.pipeline}", event)',
                ]
        else:
            lines += [
                "",
                "",
                "@https_fn.on_request()",
                f"def {target.name}(request: Any) -> Any:",
                f'    return host.handle_request("{target.pipeline}", request)',
            ]
    return "\n".join(lines) + "\n"


def _pattern(collection: str) -> str:
    return f"{collection}/{{docId}}"


def _deploy_sh(targets: list[FunctionTarget]) -> str:
    lines = [
        "#!/bin/sh",
        "# Deploys each function of this folder to Cloud Functions (2nd gen):",
        "# see docs/functions.md.",
        "# Set REGION, and the config's ${ENV} variables with --set-env-vars.",
        "set -e",
        'REGION="${REGION:-us-central1}"',
    ]
    for target in targets:
        if target.kind == "http":
            lines.append(
                f"gcloud functions deploy {target.name.replace('_', '-')} --gen2"
                ' --runtime=python311 --region="$REGION" --source=.'
                f" --entry-point={target.name} --trigger-http"
            )
            continue
        for collection in target.collections:
            name = f"{target.name}-{_identifier(collection)}".replace("_", "-")
            lines.append(
                f"gcloud functions deploy {name} --gen2 --runtime=python311"
                f' --region="$REGION" --source=. --entry-point={target.name} --retry'
                " --trigger-event-filters=type=google.cloud.firestore.document.v1.written"
                " --trigger-event-filters=database='(default)'"
                f" --trigger-event-filters-path-pattern=document='{_pattern(collection)}'"
                " --event-filters-format=protobuf"
            )
    return "\n".join(lines) + "\n"


def build_function(
    config_path: str | Path,
    out: str | Path,
    include: tuple[str | Path, ...] = (),
    firebase: bool = False,
) -> list[FunctionTarget]:
    """Write the function folder for ``config_path`` into ``out``; its targets.

    ``out`` gets ``main.py`` (a function per pipeline), the config as ``onto.yaml``
    (``${ENV}`` references are resolved in the function, from its environment), pinned
    ``requirements.txt``, ``deploy.sh`` (the ``gcloud`` commands), and a copy of each
    ``include`` path (the application's own packages, such as its view models).
    """
    config = load_config(config_path)
    targets = function_targets(config)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config_path, folder / CONFIG_NAME)
    write = _firebase_main_py if firebase else _main_py
    (folder / "main.py").write_text(write(Path(config_path).name, targets), encoding="utf-8")
    requirements = _requirements(config)
    if firebase:
        requirements.append("firebase-functions")
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    deploy = folder / "deploy.sh"
    deploy.write_text(_deploy_sh(targets), encoding="utf-8")
    deploy.chmod(0o755)
    for path in include:
        source = Path(path)
        target = folder / source.name
        if source.is_dir():
            shutil.copytree(
                source,
                target,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        else:
            shutil.copyfile(source, target)
    return targets
