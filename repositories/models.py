"""The domain's tables, named as in the original service where it has them.

A `Repository` is a yum repository by its normalised URL, shared by every organisation that
points at it; a `RepositoryConfiguration` is one organisation's entry for it. Snapshots freeze
a configuration's repository metadata in content-addressed `Blob`s. Writes go through
`repositories.services` and the task handlers; reads through `repositories.selectors`.
"""

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q

from tasks.models import Task

ERROR_LIMIT = 4000


class Repository(models.Model):
    """A yum repository at a normalised URL, and what its last introspection found."""

    class Status(models.TextChoices):
        PENDING = "Pending"  # never introspected yet
        VALID = "Valid"
        INVALID = "Invalid"  # answered, but not with valid yum metadata
        UNAVAILABLE = "Unavailable"  # could not be reached

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.CharField(max_length=2048, unique=True)
    revision = models.CharField(max_length=255, blank=True, default="")
    # sha256 of repomd.xml at the last successful introspection: unchanged means nothing to parse.
    repomd_checksum = models.CharField(max_length=64, blank=True, default="")
    package_count = models.IntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING)
    last_introspection_time = models.DateTimeField(null=True, blank=True)
    last_introspection_success_time = models.DateTimeField(null=True, blank=True)
    # When an introspection last found the metadata changed.
    last_introspection_update_time = models.DateTimeField(null=True, blank=True)
    last_introspection_error = models.CharField(max_length=ERROR_LIMIT, blank=True, default="")
    failed_introspections_count = models.IntegerField(default=0)
    packages: "models.ManyToManyField[Package, RepositoryPackage]" = models.ManyToManyField(
        "Package", through="RepositoryPackage", related_name="repositories"
    )

    class Meta:
        db_table = "repositories"
        verbose_name_plural = "repositories"

    def __str__(self) -> str:
        return self.url


class Package(models.Model):
    """An RPM as yum metadata describes it, stored once whatever number of repositories hold it."""

    name = models.CharField(max_length=255)
    arch = models.CharField(max_length=32)
    version = models.CharField(max_length=255)
    release = models.CharField(max_length=255)
    epoch = models.IntegerField(default=0)
    checksum_type = models.CharField(max_length=16)
    checksum = models.CharField(max_length=128)
    summary = models.TextField(blank=True, default="")

    class Meta:
        db_table = "packages"
        constraints = [models.UniqueConstraint(fields=["checksum_type", "checksum"], name="packages_checksum_key")]
        indexes = [
            # Search by name, and by the start of a name (LIKE 'prefix%').
            models.Index(fields=["name"], name="packages_name_idx", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        return f"{self.name}-{epoch}{self.version}-{self.release}.{self.arch}"


class RepositoryPackage(models.Model):
    """A package that a repository's metadata lists; the key reads a repository's packages."""

    pk = models.CompositePrimaryKey("repository_id", "package_id")
    repository = models.ForeignKey(Repository, on_delete=models.DB_CASCADE, related_name="+")
    package = models.ForeignKey(Package, on_delete=models.DB_CASCADE, related_name="+")

    class Meta:
        db_table = "repositories_packages"

    def __str__(self) -> str:
        return f"{self.package_id} in {self.repository_id}"


class LiveConfigurations(models.Manager["RepositoryConfiguration"]):
    def get_queryset(self) -> models.QuerySet["RepositoryConfiguration"]:
        return super().get_queryset().filter(deleted_at__isnull=True)


class RepositoryConfiguration(models.Model):
    """One organisation's entry for a repository: its name and how to use it."""

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org_id = models.CharField(max_length=255)
    account_id = models.CharField(max_length=255, blank=True, default="")
    name = models.CharField(max_length=255)
    # Repositories are shared, URL-level records: one stays when its last configuration goes.
    repository = models.ForeignKey(Repository, on_delete=models.DO_NOTHING, related_name="configurations")
    distribution_versions = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    distribution_arch = models.CharField(max_length=32, default="any")
    gpg_key = models.TextField(blank=True, default="")
    metadata_verification = models.BooleanField(default=False)
    module_hotfixes = models.BooleanField(default=False)
    snapshot = models.BooleanField(default=False)
    # Soft delete: a deleted configuration waits for its delete-repository-snapshots task.
    deleted_at = models.DateTimeField(null=True, blank=True)
    last_snapshot = models.ForeignKey("Snapshot", null=True, blank=True, on_delete=models.DB_SET_NULL, related_name="+")
    last_snapshot_task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.DB_SET_NULL, related_name="+")
    last_introspection_task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.DB_SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = models.Manager()
    live = LiveConfigurations()

    class Meta:
        db_table = "repository_configurations"
        constraints = [
            models.UniqueConstraint(
                fields=["org_id", "name"], condition=Q(deleted_at__isnull=True), name="repository_configurations_name"
            ),
            models.UniqueConstraint(
                fields=["org_id", "repository"],
                condition=Q(deleted_at__isnull=True),
                name="repository_configurations_url",
            ),
        ]
        indexes = [
            # The API's list: an organisation's configurations, by name.
            models.Index(fields=["org_id", "name"], name="repository_configurations_org"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.org_id})"


class Blob(models.Model):
    """A stored metadata file, by the sha256 of its bytes: stored once, shared by snapshots.

    The row exists only while its file does (repositories.storage writes the file under the
    row's lock, and deletes it before the row's deletion commits).
    """

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    stored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "snapshot_blobs"

    def __str__(self) -> str:
        return self.sha256


class Snapshot(models.Model):
    """A configuration's repository metadata, frozen: served back as a yum repository."""

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    repository_configuration = models.ForeignKey(
        RepositoryConfiguration, on_delete=models.DB_CASCADE, related_name="snapshots"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # repomd.xml of the snapshot, as stored: the content address of its metadata.
    repomd = models.ForeignKey(Blob, on_delete=models.DO_NOTHING, related_name="+")
    # By content type: {"rpm": 120, "advisory": 4, ...}; added and removed: against the
    # configuration's previous snapshot.
    content_counts = models.JSONField(default=dict)
    added_counts = models.JSONField(default=dict)
    removed_counts = models.JSONField(default=dict)
    # The snapshot task that made it: one snapshot per task, however many times it ran.
    task = models.OneToOneField(Task, null=True, blank=True, on_delete=models.DB_SET_NULL, related_name="+")

    class Meta:
        db_table = "snapshots"
        indexes = [
            models.Index(F("repository_configuration"), F("created_at").desc(), name="snapshots_newest"),
        ]

    def __str__(self) -> str:
        return f"snapshot {self.uuid} of {self.repository_configuration_id}"


class SnapshotFile(models.Model):
    """A file of a snapshot's yum repository (repodata/repomd.xml and every file it lists)."""

    snapshot = models.ForeignKey(Snapshot, on_delete=models.DB_CASCADE, related_name="files")
    # As served, relative to the snapshot's URL: repodata/<...>-primary.xml.gz.
    path = models.CharField(max_length=1024)
    # Its type in repomd.xml (primary, updateinfo, ...), or "repomd" for repomd.xml itself.
    type = models.CharField(max_length=64)
    # A blob in use cannot be deleted: the foreign key (checked at once where it matters,
    # see repositories.storage) keeps it.
    blob = models.ForeignKey(Blob, on_delete=models.DO_NOTHING, related_name="+")

    class Meta:
        db_table = "snapshot_files"
        constraints = [models.UniqueConstraint(fields=["snapshot", "path"], name="snapshot_files_path")]

    def __str__(self) -> str:
        return self.path
