"""The admin shows repositories, configurations and snapshots; it changes none of them.

Writes go through repositories.services (with the tasks they queue), which the API and
`manage.py repositories` call: an edit here would skip them.
"""

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from repositories.models import Repository, RepositoryConfiguration, Snapshot


class ViewOnlyAdmin[M: Model](admin.ModelAdmin[M]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Repository)
class RepositoryAdmin(ViewOnlyAdmin[Repository]):
    list_display = ["url", "status", "package_count", "last_introspection_time", "failed_introspections_count"]
    list_filter = ["status"]
    search_fields = ["url"]
    ordering = ["url"]
    fields = readonly_fields = (
        "uuid",
        "url",
        "status",
        "revision",
        "repomd_checksum",
        "package_count",
        "last_introspection_time",
        "last_introspection_success_time",
        "last_introspection_update_time",
        "last_introspection_error",
        "failed_introspections_count",
    )


@admin.register(RepositoryConfiguration)
class RepositoryConfigurationAdmin(ViewOnlyAdmin[RepositoryConfiguration]):
    list_display = ["name", "org_id", "repository_url", "snapshot", "deleted_at", "last_snapshot_link"]
    list_filter = ["snapshot", ("deleted_at", admin.EmptyFieldListFilter)]
    list_select_related = ["repository", "last_snapshot"]
    search_fields = ["name", "org_id__exact", "uuid__exact"]
    search_help_text = "Part of a name, or an exact org id or uuid."
    ordering = ["org_id", "name"]
    fields = readonly_fields = (
        "uuid",
        "org_id",
        "account_id",
        "name",
        "repository",
        "distribution_versions",
        "distribution_arch",
        "gpg_key",
        "metadata_verification",
        "module_hotfixes",
        "snapshot",
        "deleted_at",
        "last_snapshot_link",
        "last_snapshot_task",
        "last_introspection_task",
        "created_at",
        "updated_at",
    )

    @admin.display(description="url", ordering="repository__url")
    def repository_url(self, configuration: RepositoryConfiguration) -> str:
        return configuration.repository.url

    @admin.display(description="last snapshot")
    def last_snapshot_link(self, configuration: RepositoryConfiguration) -> SafeString | str:
        snapshot = configuration.last_snapshot
        if snapshot is None:
            return "-"
        url = reverse("admin:repositories_snapshot_change", args=[snapshot.uuid])
        return format_html('<a href="{}">{}</a>', url, snapshot.created_at.isoformat(timespec="seconds"))


@admin.register(Snapshot)
class SnapshotAdmin(ViewOnlyAdmin[Snapshot]):
    list_display = ["uuid", "repository_configuration", "created_at", "content_counts"]
    list_select_related = ["repository_configuration"]
    search_fields = ["uuid__exact", "repository_configuration__uuid__exact"]
    ordering = ["-created_at"]
    fields = readonly_fields = (
        "uuid",
        "repository_configuration",
        "created_at",
        "served_at",
        "content_counts",
        "added_counts",
        "removed_counts",
        "task",
        "file_list",
    )

    @admin.display(description="served at")
    def served_at(self, snapshot: Snapshot) -> SafeString:
        org_id = snapshot.repository_configuration.org_id
        url = f"/{settings.CONTENT_URL_PREFIX}{org_id}/{snapshot.uuid}/repodata/repomd.xml"
        return format_html('<a href="{}">{}</a>', url, url)

    @admin.display(description="files")
    def file_list(self, snapshot: Snapshot) -> SafeString:
        rows = ((file.path, file.blob_id) for file in snapshot.files.order_by("path"))
        return format_html_join(mark_safe("<br>"), "{} <small>sha256 {}</small>", rows)
