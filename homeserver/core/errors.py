"""One error type for every Matrix failure; the HTTP layers map it to JSON once."""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """A failure the client (or peer) sees as ``{"errcode": ..., "error": ...}``."""

    def __init__(self, status: int, errcode: str, error: str, **extra: Any) -> None:
        super().__init__(f"{errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}


def forbidden(msg: str = "Forbidden") -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", msg)


def not_found(msg: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", msg)


def bad_json(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def not_json(msg: str = "Content not JSON.") -> MatrixError:
    return MatrixError(400, "M_NOT_JSON", msg)


def missing_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", msg)


def invalid_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", msg)


def too_large(msg: str = "Request too large") -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", msg)


def unknown_token(msg: str = "Unrecognised access token", soft_logout: bool = False) -> MatrixError:
    extra = {"soft_logout": True} if soft_logout else {}
    return MatrixError(401, "M_UNKNOWN_TOKEN", msg, **extra)


def unrecognized(status: int = 404, msg: str = "Unrecognized request") -> MatrixError:
    return MatrixError(status, "M_UNRECOGNIZED", msg)


class StorageUnavailable(MatrixError):
    """The database cannot be reached (down, restarting, connection lost): nothing this
    request would have written was committed, so the client may retry it (same txn id).
    503, so clients and proxies back off and retry rather than give up."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, "M_UNKNOWN", "The database is unavailable; try again shortly")
        self.detail = detail


class StorageFull(MatrixError):
    """The database or media store has no space left: nothing was written. Spec "Common
    error codes": M_RESOURCE_LIMIT_EXCEEDED is a limit imposed on the homeserver; 507
    (RFC 4918, Insufficient Storage) says which one."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            507, "M_RESOURCE_LIMIT_EXCEEDED",
            "The server is out of storage space; ask its administrator", limit_type="storage",
        )
        self.detail = detail


class AuthError(MatrixError):
    """An event failed the room's authorization rules (always 403 M_FORBIDDEN)."""

    def __init__(self, msg: str) -> None:
        super().__init__(403, "M_FORBIDDEN", msg)


class SignatureError(MatrixError):
    """A signature or hash did not verify."""

    def __init__(self, msg: str) -> None:
        super().__init__(401, "M_UNAUTHORIZED", msg)
