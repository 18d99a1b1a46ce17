"""MongoDB client factory and blob store (GridFS)."""

from __future__ import annotations

from typing import Any

import gridfs
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database

from services.shared.settings import CommonSettings

Doc = dict[str, Any]


def make_client(settings: CommonSettings) -> MongoClient[Doc]:
    # retryWrites=false: the local database slows down with retryable writes (README,
    # "Local infrastructure"); on real MongoDB it costs only the automatic retry.
    retry = settings.profile != "local"
    return MongoClient(
        settings.mongo_uri,
        retryWrites=retry,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        socketTimeoutMS=max(10_000, settings.mongo_timeout_ms * 3),
        tz_aware=True,
    )


def database(client: MongoClient[Doc], settings: CommonSettings) -> Database[Doc]:
    return client[settings.mongo_db]


class MongoProbe:
    """Readiness check with its own client and tight timeouts, so a hung database makes
    /readyz answer 503 within about a second instead of blocking it."""

    def __init__(self, settings: CommonSettings, timeout_ms: int = 1000) -> None:
        self._client: MongoClient[Doc] = MongoClient(
            settings.mongo_uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            retryWrites=False,
        )

    def __call__(self) -> bool:
        try:
            self._client.admin.command("ping")
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._client.close()


class BlobStore:
    """Sanitised image bytes (bucket ``blobs``: ingest writes; links and scanner read), or the
    evidence vault (bucket ``evidence``: blocked images, never served, reviewed by admins)."""

    def __init__(self, db: Database[Doc], bucket: str = "blobs") -> None:
        self._fs = gridfs.GridFS(db, collection=bucket)

    def put(self, data: bytes, content_type: str) -> str:
        return str(self._fs.put(data, content_type=content_type))

    def get(self, blob_id: str) -> bytes:
        data: bytes = self._fs.get(ObjectId(blob_id)).read()
        return data

    def delete(self, blob_id: str) -> None:
        self._fs.delete(ObjectId(blob_id))
