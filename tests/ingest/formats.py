"""Real files of each supported format, made with the libraries that write them (issue 3)."""

from __future__ import annotations

import io
from email.message import EmailMessage


def docx_with_table() -> bytes:
    import docx
    from docx.enum.text import WD_BREAK

    document = docx.Document()
    document.add_heading("Master Services Agreement", level=0)
    document.add_heading("12. Termination", level=1)
    document.add_paragraph("Either party may terminate this agreement for material breach.")
    document.add_heading("12.2 Notice", level=2)
    document.add_paragraph("Notice of termination must be given ninety (90) days in writing.")
    table = document.add_table(rows=3, cols=3)
    for row, cells in zip(
        table.rows,
        [
            ["Service", "Fee", "Due"],
            ["Hosting", "1,200 EUR", "monthly"],
            ["Support", "300 EUR", "quarterly"],
        ],
        strict=True,
    ):
        for cell, value in zip(row.cells, cells, strict=True):
            cell.text = value
    breaker = document.add_paragraph("End of schedule.")
    breaker.add_run().add_break(WD_BREAK.PAGE)
    breaker.add_run("Signed by the escrow agent on page two.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


HTML_PAGE = b"""<!DOCTYPE html>
<html><head><title>Visitor policy</title>
<style>body { color: red } .secret { display: none }</style>
<script>var leaked = "SCRIPT-TEXT-MUST-NOT-APPEAR";</script>
</head>
<body>
<nav>Home</nav>
<h1>Visitor policy</h1>
<p>All visitors <b>must</b> sign in at reception and wear a badge.</p>
<div hidden>HIDDEN-ATTRIBUTE-TEXT</div>
<p style="display:none">INLINE-HIDDEN-TEXT</p>
<span aria-hidden="true">ARIA-HIDDEN-TEXT</span>
<noscript>NOSCRIPT-TEXT</noscript>
<!-- COMMENT-TEXT -->
<h2>Opening hours</h2>
<table>
  <tr><th>Day</th><th>Open</th><th>Close</th></tr>
  <tr><td>Monday</td><td>08:00</td><td>18:00</td></tr>
  <tr><td>Saturday</td><td>10:00</td><td>14:00</td></tr>
</table>
<script type="text/javascript">document.write("SECOND-SCRIPT")</script>
<p class="secret">CLASS-HIDDEN-TEXT</p>
<p>Escorts are required in the server room.</p>
</body></html>
"""


def eml_with_attachments(pdf: bytes, txt: bytes, *, html_only: bool = False) -> bytes:
    message = EmailMessage()
    message["From"] = "Ana Ruiz <ana.ruiz@example.org>"
    message["To"] = "records@example.org"
    message["Date"] = "Tue, 03 Mar 2026 09:15:00 +0000"
    message["Subject"] = "Signed lease for unit 4B"
    if html_only:
        message.set_content(
            "<html><body><p>Please file the <b>signed lease</b>.</p>"
            "<script>alert('NO-SCRIPT-IN-MAIL')</script></body></html>",
            subtype="html",
        )
    else:
        message.set_content(
            "Hello records team,\n\nplease file the signed lease for unit 4B.\n"
            "The monthly rent is 1,450 EUR.\n"
        )
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename="lease.pdf")
    message.add_attachment(txt, maintype="text", subtype="plain", filename="inventory.txt")
    return message.as_bytes()


def page_image(lines: list[str], *, size: int = 44, fmt: str = "PNG") -> bytes:
    """A white page with black text, as a scanner would produce (300 dpi)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    image = Image.new("L", (2000, 200 + 90 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((120, 100 + 90 * index), line, font=font, fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, dpi=(300, 300))
    return buffer.getvalue()


def scanned_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose pages are images only (no text layer), like a scanner's output."""
    from PIL import Image

    images = [Image.open(io.BytesIO(page_image(lines))).convert("RGB") for lines in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=300)
    return buffer.getvalue()


def text_pdf(page_texts: list[str]) -> bytes:
    """A PDF with a real text layer, one page per string (Helvetica, drawn with pypdf)."""
    from pypdf import PdfWriter
    from pypdf.generic import (
        ContentStream,
        DecodedStreamObject,
        DictionaryObject,
        NameObject,
    )

    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in page_texts:
        page = writer.add_blank_page(width=612, height=792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        stream = DecodedStreamObject()
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(ContentStream(stream, writer))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
