"""Revoke a group's grant on a collection: `python manage.py revoke SLUG --group G`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand

from assistant.access import grant_set

from .grant import collection_and_group

if TYPE_CHECKING:
    from django.core.management.base import CommandParser


class Command(BaseCommand):
    help = "Take a collection away from a group."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--group", required=True, metavar="G")

    def handle(self, *args: Any, slug: str, group: str, **options: Any) -> None:
        collection, target = collection_and_group(slug, group, create_group=False)
        grant_set(collection=collection, group=target, can_manage=None, actor_name="cli")
        self.stdout.write(f"{target.name}: no access to {collection.slug}")
