import pgvector.django
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import BtreeGinExtension
from django.db import migrations

# Retrieval at a million chunks (docs/performance.md): the full-text index leads with the
# collection, so the full-text arm reads only rows the user may read; the HNSW graph is built
# with ef_construction 128 for recall under a collection filter. Rebuilding the HNSW index takes
# minutes on a large table (549 s for 1M chunks on 2 cores).


class Migration(migrations.Migration):
    dependencies = [("ingest", "0008_merge_0004_patients_0007_merge_20261124_1513")]

    operations = [
        # btree_gin is a trusted extension (PostgreSQL 13+): the database owner may create it.
        BtreeGinExtension(),
        migrations.RemoveIndex(model_name="chunk", name="chunk_search_vector_gin"),
        # The same column's foreign-key index stays; this one only doubled the write cost.
        migrations.RemoveIndex(model_name="chunk", name="chunk_collection_idx"),
        migrations.AddIndex(
            model_name="chunk",
            index=GinIndex(
                fields=["collection", "search_vector"], name="chunk_collection_search_gin"
            ),
        ),
        migrations.RemoveIndex(model_name="chunk", name="chunk_embedding_hnsw"),
        migrations.AddIndex(
            model_name="chunk",
            index=pgvector.django.HnswIndex(
                ef_construction=128,
                fields=["embedding"],
                m=16,
                name="chunk_embedding_hnsw",
                opclasses=["vector_cosine_ops"],
            ),
        ),
    ]
