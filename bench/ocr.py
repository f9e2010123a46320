"""OCR throughput: pages/s and mean confidence for scanned pages, with Tesseract as installed.

    .venv/bin/python bench/ocr.py [PAGES] [--dpi 300]

Generates an A4 scanned PDF (PAGES pages of 40 lines of contract-like text rendered with
Pillow at 300 dpi, no text layer), parses it with ingest.parsers.parse (pdftoppm + Tesseract,
one page at a time, as the worker does), and prints pages/s, seconds per page, the mean
confidence and the share of words read back exactly. No database needed.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = (
    "the tenant shall pay rent monthly in advance deposit notice termination landlord "
    "premises agreement clause party breach remedy indemnify insurance repair access"
).split()


def a4_page(number: int) -> tuple[bytes, list[str]]:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=42)
    image = Image.new("L", (2480, 3508), 255)
    draw = ImageDraw.Draw(image)
    words: list[str] = []
    for line in range(40):
        text = " ".join(WORDS[(number * 7 + line * 3 + i) % len(WORDS)] for i in range(9))
        words.extend(text.split())
        draw.text((200, 200 + line * 75), f"{line + 1}. {text}.", font=font, fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), words


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("pages", nargs="?", type=int, default=5)
    parser.add_argument("--dpi", type=int, default=300)
    args = parser.parse_args()
    from PIL import Image

    from ingest.parsers import parse, pdf

    import_settings = {"OCR_DPI": args.dpi}
    pdf.ocr._setting = lambda name, default: import_settings.get(name, default)  # no Django
    images, expected = [], []
    for number in range(args.pages):
        png, words = a4_page(number)
        images.append(Image.open(io.BytesIO(png)).convert("RGB"))
        expected.extend(words)
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=300)
    started = time.perf_counter()
    parsed = parse(buffer.getvalue(), "scan.pdf")
    seconds = time.perf_counter() - started
    read = re.findall(r"[a-z]+", parsed.text.lower())
    found = sum(1 for w in expected if w in set(read))
    confidences = [p.confidence for p in parsed.pages if p.confidence is not None]
    print(f"pages: {parsed.page_count}, OCR'd: {sum(p.ocr for p in parsed.pages)}")
    print(
        f"seconds: {seconds:.2f} ({seconds / parsed.page_count:.2f} s/page, "
        f"{parsed.page_count / seconds:.2f} pages/s)"
    )
    print(f"mean confidence: {sum(confidences) / len(confidences):.1f}")
    print(f"expected words found: {found}/{len(expected)} ({100 * found / len(expected):.1f}%)")


if __name__ == "__main__":
    main()
