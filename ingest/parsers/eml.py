"""E-mail messages (.eml, RFC 5322) with the standard library.

The extracted text is the headers people search by (From, To, Cc, Date, Subject) and the body:
the text/plain part, or the HTML part reduced to its visible text when there is no plain
one. Attachments (and attached messages) are handed on as `Attachment`s; the pipeline
ingests each as its own document linked to the message.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, MIMEPart
from typing import cast

from .base import Attachment, ParsedDocument, ParseError, TextBuilder
from .html import html_to_builder

HEADERS = ("From", "To", "Cc", "Date", "Subject")
MAX_ATTACHMENTS = 500


def _content(part: MIMEPart) -> str | bytes:
    try:
        return part.get_content()
    except (LookupError, ValueError, AssertionError):
        # An unknown charset or a broken transfer encoding: take the raw bytes and decode
        # them like a text file would be.
        # Decoded, a part's payload is bytes, or None for a multipart one.
        return cast("bytes | None", part.get_payload(decode=True)) or b""


def _attachments(message: EmailMessage) -> list[Attachment]:
    found: list[Attachment] = []
    for index, part in enumerate(message.iter_attachments(), start=1):
        if len(found) >= MAX_ATTACHMENTS:
            break
        name = part.get_filename() or ""
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if not isinstance(inner, EmailMessage):
                continue
            data = inner.as_bytes()
            name = name or f"{inner.get('Subject') or 'attached message'}.eml"
        else:
            data = cast("bytes | None", part.get_payload(decode=True)) or b""
            name = name or f"attachment-{index}{_extension(part.get_content_type())}"
        if data:
            found.append(Attachment(name=name.replace("/", "_").replace("\\", "_"), data=data))
    return found


def _extension(content_type: str) -> str:
    import mimetypes

    return mimetypes.guess_extension(content_type) or ""


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # noqa: BLE001 - a malformed header must not lose the message
        value = None
    return " ".join(str(value).split()) if value else ""


def parse_email(data: bytes) -> ParsedDocument:
    try:
        return _parse_email(data)
    except ParseError:
        raise
    except Exception as exc:  # the email package raises many types on broken MIME structure
        raise ParseError(f"The e-mail message is damaged and cannot be read ({exc}).") from exc


def _parse_email(data: bytes) -> ParsedDocument:
    from .text import decode_text

    message = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(message, EmailMessage) or not any(_header(message, h) for h in HEADERS):
        raise ParseError("The file is named .eml but has no e-mail headers (From, To, Subject).")
    builder = TextBuilder()
    subject = _header(message, "Subject")
    if subject:
        builder.heading(subject, 1)
    headers = {name: _header(message, name) for name in HEADERS}
    builder.paragraph("\n".join(f"{name}: {value}" for name, value in headers.items() if value))
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        content = _content(body)
        if body.get_content_type() == "text/html":
            html_to_builder(content, builder)
        else:
            text = content if isinstance(content, str) else decode_text(content)
            for block in text.replace("\r\n", "\n").split("\n\n"):
                builder.paragraph(block)
    parsed = builder.build()
    parsed.attachments = _attachments(message)
    if subject:
        parsed.metadata["title"] = subject
    return parsed
