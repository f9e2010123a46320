"""What ingestion tells the rest of the product, without importing it.

`attachment_stored` is sent, inside the indexing transaction, for each attachment the pipeline
stores as a document of its own (an e-mail's files): the audit app records it as uploaded, as
it records every upload made by a person (ingest imports neither assistant nor audit).
"""

from __future__ import annotations

from django.dispatch import Signal

# sender: the Document class; kwargs: document (the attachment), parent (the e-mail).
attachment_stored = Signal()
