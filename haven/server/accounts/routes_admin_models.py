"""``POST /api/v1/admin/models/import`` (admins only): import a GGUF file that is already on the server machine.

Only files under ``HAVEN_MODEL_IMPORT_DIRS`` (empty: the route is off and says how to turn it on). The path
must be absolute, name no ``..`` part, and resolve — symlinks followed — to a regular file inside one of
those directories: a link pointing out of them is refused like any other outside path, and the message
never tells whether an outside file exists. The resolved path is what gets imported, through the model
store's own import (GGUF check, trial load in a child process, chat-template scan), in a worker thread so
the event loop keeps serving; its one-line error is the answer's message.
"""

from __future__ import annotations

import stat
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import anyio
from fastapi import APIRouter, Request
from pydantic import Field

from haven.errors import InvalidRequestError, PermissionDeniedError
from haven.models.store import ModelStore
from haven.server.accounts.deps import log_event, require_admin
from haven.server.accounts.schemas import Body
from haven.settings import Settings

router = APIRouter(prefix="/models", tags=["admin"])


class ModelImportDisabledError(PermissionDeniedError):
    code = "model_import_disabled"


class ModelImport(Body):
    path: str = Field(min_length=1, max_length=4096, description="Absolute path of a GGUF file on the server.")
    name: str | None = Field(default=None, max_length=300, description="name:tag (default: from the file).")


def allowed_dirs(settings: Settings) -> list[Path]:
    return [Path(d).expanduser().resolve() for d in settings.model_import_dirs if d.strip()]


def checked_path(raw: str, roots: list[Path]) -> Path:
    """The resolved regular file ``raw`` names inside one of ``roots``; InvalidRequestError (param path) else."""
    if "\x00" in raw:
        raise InvalidRequestError("path must not contain NUL characters.", param="path")
    given = Path(raw)
    if not given.is_absolute():
        raise InvalidRequestError("path must be absolute (e.g. /srv/models/model.gguf).", param="path")
    if ".." in PurePosixPath(raw).parts or ".." in PureWindowsPath(raw).parts:
        raise InvalidRequestError("path must not contain '..'.", param="path")
    resolved = given.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise InvalidRequestError(
            f"path is not inside an import directory (HAVEN_MODEL_IMPORT_DIRS: {allowed}); "
            "symlinks are followed before this check.",
            param="path",
        )
    try:
        mode = resolved.stat().st_mode
    except OSError:
        raise InvalidRequestError(f"{raw}: no such file.", param="path") from None
    if not stat.S_ISREG(mode):
        raise InvalidRequestError(f"{raw}: not a regular file.", param="path")
    return resolved


@router.post("/import", status_code=201, summary="Import a GGUF file from an allowed directory on the server")
async def import_model(body: ModelImport, request: Request) -> dict[str, Any]:
    await anyio.to_thread.run_sync(require_admin, request)
    settings: Settings = request.app.state.settings
    roots = allowed_dirs(settings)
    if not roots:
        raise ModelImportDisabledError(
            "importing from a server path is off: set HAVEN_MODEL_IMPORT_DIRS to the directories admins may "
            "import from, or run `haven models import PATH` on the server."
        )
    path = await anyio.to_thread.run_sync(checked_path, body.path, roots)  # resolve() and stat() touch the disk
    store: ModelStore = request.app.state.model_manager.store
    allow = settings.allow_unsafe_templates
    manifest = await anyio.to_thread.run_sync(
        lambda: store.import_file(path, body.name, allow_unsafe_template=allow, source=str(path))
    )
    await anyio.to_thread.run_sync(
        lambda: log_event(request, "model_imported", details={"model": manifest.name, "source": str(path)[:500]})
    )
    return {
        "model": manifest.name,
        "sha256": manifest.sha256,
        "size": manifest.size,
        "architecture": manifest.architecture,
        "quantization": manifest.quantization,
        "context_length": manifest.context_length,
        "template_safe": manifest.template_safe,
        "template_warning": manifest.template_warning,
    }
