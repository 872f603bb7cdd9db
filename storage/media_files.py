"""Media bytes on the local disk, under ``media_store_path`` (a ``MediaStorage``).

Keys are ``/``-separated names made by the media service from validated server
names and media ids; each is checked again here so that no key can name a file
outside the store. Media never changes once written, so ``put`` creates a key
once and reports whether it did (a second upload to the same id is refused).
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
import shutil
from pathlib import Path

from homeserver.core.errors import StorageFull

# Server names bring ":", "[" and "]" (ports, IPv6 literals); media ids bring "_" and "-".
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,255}\Z")


class LocalMediaStorage:
    def __init__(self, root: str) -> None:
        self._root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not all(_SEGMENT_RE.match(p) and p not in (".", "..") for p in parts):
            raise ValueError(f"unsafe media storage key {key!r}")
        path = self._root.joinpath(*parts)
        if self._root not in path.parents:
            raise ValueError(f"media storage key {key!r} leaves the store")
        return path

    async def put(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` unless it exists; True when this call stored it.
        A full disk is ``StorageFull`` (507 M_RESOURCE_LIMIT_EXCEEDED), nothing left behind."""
        try:
            return await asyncio.to_thread(self._put, self._path(key), data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StorageFull(f"media store {self._root}: {exc.strerror}") from None
            raise

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._get, self._path(key))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete_tree(self, key: str) -> None:
        """Remove the file or directory under ``key`` (an admin deleting media)."""
        await asyncio.to_thread(self._delete, self._path(key))

    @staticmethod
    def _delete(path: Path) -> None:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    @staticmethod
    def _put(path: Path, data: bytes) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # atomic, and fails rather than replace existing media
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _get(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
