"""The content repository's rows: one per mxc:// URI (ours, pending ones, cached remote)."""

from __future__ import annotations

from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from homeserver.core.media import MediaRecord
from storage.schema import media, quarantined_media


class MediaStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, server_name: str, media_id: str) -> MediaRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(media).where(
                media.c.server_name == server_name, media.c.media_id == media_id,
            ))).first()
        return MediaRecord(**row._mapping) if row is not None else None

    async def add(self, row: MediaRecord) -> bool:
        """Insert; False when the URI is already known (two fetches of one remote file)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(media.insert().values(**attrs.asdict(row)))
        except sa.exc.IntegrityError:
            return False
        return True

    async def count_pending(self, user_id: str, now_ts: int) -> int:
        """Ids ``user_id`` created and has not uploaded to yet, that have not expired."""
        async with self._engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(media).where(
                media.c.user_id == user_id, media.c.uploaded_ts.is_(None),
                media.c.expires_ts > now_ts,
            ))).scalar() or 0)

    async def complete_upload(
        self, server_name: str, media_id: str, content_type: str, upload_name: str | None,
        size: int, uploaded_ts: int,
    ) -> bool:
        """Mark a pending id uploaded; False when it was not pending any more."""
        async with self._engine.begin() as conn:
            result = await conn.execute(media.update().where(
                media.c.server_name == server_name, media.c.media_id == media_id,
                media.c.uploaded_ts.is_(None),
            ).values(
                content_type=content_type, upload_name=upload_name, size=size,
                uploaded_ts=uploaded_ts, expires_ts=None,
            ))
        return result.rowcount == 1

    # -- administration ---------------------------------------------------------------------

    async def user_media(self, server_name: str, user_id: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        where = [media.c.server_name == server_name, media.c.user_id == user_id]
        async with self._engine.connect() as conn:
            total = int((await conn.execute(sa.select(sa.func.count()).select_from(media).where(*where))).scalar() or 0)
            rows = await conn.execute(
                sa.select(media, quarantined_media.c.quarantined_by)
                .outerjoin(quarantined_media, sa.and_(
                    quarantined_media.c.server_name == media.c.server_name,
                    quarantined_media.c.media_id == media.c.media_id,
                ))
                .where(*where).order_by(media.c.created_ts.desc(), media.c.media_id).offset(offset).limit(limit)
            )
            return [dict(r._mapping) for r in rows], total

    async def delete_media_row(self, server_name: str, media_id: str) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(media.delete().where(
                media.c.server_name == server_name, media.c.media_id == media_id,
            ))
            await conn.execute(quarantined_media.delete().where(
                quarantined_media.c.server_name == server_name, quarantined_media.c.media_id == media_id,
            ))
        return res.rowcount > 0

    async def quarantine(self, server_name: str, media_id: str, by: str | None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(quarantined_media.delete().where(
                quarantined_media.c.server_name == server_name, quarantined_media.c.media_id == media_id,
            ))
            if by is not None:
                await conn.execute(quarantined_media.insert().values(
                    server_name=server_name, media_id=media_id, quarantined_by=by,
                ))

    async def is_quarantined(self, server_name: str, media_id: str) -> bool:
        async with self._engine.connect() as conn:
            return (await conn.execute(sa.select(quarantined_media.c.media_id).where(
                quarantined_media.c.server_name == server_name, quarantined_media.c.media_id == media_id,
            ))).first() is not None
