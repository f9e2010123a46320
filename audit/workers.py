"""Verify's content check over one id range, and the worker processes that run it.

`audit_verify` on a large trail starts worker processes with multiprocessing's 'spawn' context
(no Django state, no inherited connection). Each opens its own connection and imports the
snapshot the main process exported (`SET TRANSACTION SNAPSHOT`), so every process reads exactly
the same rows. For each id range it is given, a worker recomputes the payload hash of every
entry that is not a tombstone and reports the first entry whose content does not match its
stored `payload_hash`; the main process checks everything else from the hash columns, and
checks the first few ranges' content itself while the workers start.

Nothing here imports Django.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import ByteaBinaryLoader

from .canonical import content_matches

# Fetched with binary results: ints, timestamps and booleans arrive without text parsing.
# format('%s', ip_address) is inet's output text, exactly what the ORM returns for it (Django
# loads inet as text); ip_address::text would add the netmask ("10.0.0.1/32"). `payload` is
# `json`, whose binary form is its stored text: range_rows loads it as bytes, unparsed.
CONTENT_COLUMNS = (
    "id::int8, event_type::text, created_at, actor_id::int8, actor_username::text, "
    "CASE WHEN ip_address IS NULL THEN NULL ELSE format('%s', ip_address) END, "
    "user_agent::text, collection_id::int8, flagged, summary::text, "
    "payload, payload_hash::text, redacted"
)

_connection: psycopg.Connection | None = None


def range_rows(conn: psycopg.Connection, columns: str, lo: int, hi: int) -> list[tuple]:
    """`columns` of the entries with lo <= id <= hi, in id order, as binary results."""
    query = (
        f"SELECT {columns} FROM assistant_auditevent "  # noqa: S608 - constant columns, int ids
        f"WHERE id BETWEEN {int(lo)} AND {int(hi)} ORDER BY id"
    )  # no parameters: the columns' format('%s', ...) is not a placeholder
    with psycopg.Cursor(conn) as cursor:
        cursor.adapters.register_loader("json", ByteaBinaryLoader)
        cursor.execute(query, binary=True)
        return cursor.fetchall()


def first_content_mismatch(rows: list[tuple]) -> int | None:
    """The id of the first CONTENT_COLUMNS row whose content does not match its stored
    payload hash (audit_canonical.content_matches); tombstones are skipped."""
    for (
        event_id,
        event_type,
        created_at,
        actor_id,
        actor_username,
        ip_address,
        user_agent,
        collection_id,
        flagged,
        summary,
        payload,
        payload_hash,
        is_redacted,
    ) in rows:
        if is_redacted:
            continue
        if not content_matches(
            event_type,
            created_at,
            actor_id,
            actor_username,
            ip_address,
            user_agent,
            collection_id,
            flagged,
            summary,
            payload,
            payload_hash,
        ):
            return event_id
    return None


def range_first_mismatch(conn: psycopg.Connection, lo: int, hi: int) -> int | None:
    """The first entry in lo..hi whose content does not match its payload hash, or None."""
    return first_content_mismatch(range_rows(conn, CONTENT_COLUMNS, lo, hi))


def worker_start(conninfo: dict[str, Any], snapshot: str) -> None:
    """Pool initializer: connect and enter the main process's snapshot, read-only."""
    global _connection
    _connection = psycopg.connect(autocommit=True, application_name="attest verify", **conninfo)
    _connection.execute("SET TIME ZONE 'UTC'")
    _connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    _connection.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))


def check_range(bounds: tuple[int, int]) -> int | None:
    """Pool task: range_first_mismatch over (lo, hi) on this worker's connection."""
    assert _connection is not None, "worker_start has not run"
    return range_first_mismatch(_connection, *bounds)
