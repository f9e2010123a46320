from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import BtreeGinExtension
from django.db import migrations


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
    ]
