"""Grant a collection to a group: `python manage.py grant SLUG --group G [--manage]`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from assistant.access import grant_set
from ingest.models import Collection

if TYPE_CHECKING:
    from django.core.management.base import CommandParser


def collection_and_group(slug: str, group: str, *, create_group: bool) -> tuple[Collection, Group]:
    try:
        collection = Collection.objects.get(slug=slug)
    except Collection.DoesNotExist as exc:
        raise CommandError(f"No collection {slug!r}") from exc
    if create_group:
        return collection, Group.objects.get_or_create(name=group)[0]
    try:
        return collection, Group.objects.get(name=group)
    except Group.DoesNotExist as exc:
        raise CommandError(f"No group {group!r}") from exc


class Command(BaseCommand):
    help = "Let a group read and ask in a collection (--manage: also upload and erase)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--group", required=True, metavar="G")
        parser.add_argument("--manage", action="store_true")

    def handle(self, *args: Any, slug: str, group: str, manage: bool, **options: Any) -> None:
        collection, target = collection_and_group(slug, group, create_group=True)
        grant_set(collection=collection, group=target, can_manage=manage, actor_name="cli")
        self.stdout.write(f"{target.name}: {'manage' if manage else 'read'} on {collection.slug}")
