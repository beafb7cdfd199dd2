"""`delete-repository-snapshots`: remove a soft-deleted configuration's snapshots, the stored
files no remaining snapshot uses, and then the configuration.

Requeueable: a transient failure (the storage away) is retried with the framework's backoff.
Kept as the original kept its deletion tasks: 10 days once completed, for good once failed (an
operator's trace of what was not deleted), 20 days once canceled.
Each step is idempotent, so a run that died part way is finished by the next: the blobs of
each batch of snapshots are named in the task's payload before the snapshots go, and
released again by the next run.
"""

from datetime import timedelta

from django.db import transaction

from repositories.exceptions import RepositoryError
from repositories.models import RepositoryConfiguration, Snapshot, SnapshotFile
from repositories.services import DELETE_SNAPSHOTS
from repositories.storage import collect_garbage, release_blobs
from tasks.context import TaskContext
from tasks.registry import Retention, handler

BATCH = 100
# The payload's list of the blobs of the snapshots deleted last, to release.
RELEASING = "releasing_blobs"


@handler(
    DELETE_SNAPSHOTS,
    requeueable=True,
    failures=(RepositoryError,),
    retention=Retention(completed=timedelta(days=10), failed=None),
)
def delete_repository_snapshots(context: TaskContext) -> None:
    release_blobs(context.payload.get(RELEASING, []))  # an earlier run's, if it died before
    # What snapshot runs left that were killed and then never ran again (cancelled, as the
    # deletion cancels this configuration's).
    collect_garbage()
    configuration = RepositoryConfiguration.objects.filter(
        uuid=context.payload["repository_configuration_uuid"]
    ).first()
    if configuration is None:
        context.logger.info("repository configuration already deleted")
        return
    if configuration.deleted_at is None:
        context.logger.warning("repository configuration is not deleted; its snapshots are kept")
        return
    while batch := list(
        Snapshot.objects.filter(repository_configuration=configuration).values_list("uuid", flat=True)[:BATCH]
    ):
        context.raise_if_cancelled()
        blobs = set(SnapshotFile.objects.filter(snapshot__in=batch).values_list("blob_id", flat=True))
        blobs.update(Snapshot.objects.filter(uuid__in=batch).values_list("repomd_id", flat=True))
        context.update_payload({**context.payload, RELEASING: sorted(blobs)})
        with transaction.atomic():
            Snapshot.objects.filter(uuid__in=batch).delete()
        release_blobs(blobs)
    RepositoryConfiguration.objects.filter(uuid=configuration.uuid).delete()
    context.logger.info("repository configuration and its snapshots deleted uuid=%s", configuration.uuid)
