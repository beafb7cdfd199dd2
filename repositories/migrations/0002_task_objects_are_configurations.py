"""A repository task's object_uuid names its configuration (the uuid the API and the admin
show), not the Repository the configuration's URL leads to, which a URL change replaces."""

from django.db import migrations

# A task named the Repository; its organisation's configuration of it, a live one first.
FORWARD = """
UPDATE tasks t SET object_uuid = c.uuid
FROM (
    SELECT DISTINCT ON (repository_id, org_id) uuid, repository_id, org_id
    FROM repository_configurations
    ORDER BY repository_id, org_id, deleted_at DESC NULLS FIRST, uuid
) AS c
WHERE t.object_type = 'repository' AND t.object_uuid = c.repository_id AND t.org_id = c.org_id
"""
BACKWARD = """
UPDATE tasks t SET object_uuid = c.repository_id
FROM repository_configurations c
WHERE t.object_type = 'repository' AND t.object_uuid = c.uuid
"""


class Migration(migrations.Migration):
    dependencies = [
        ("repositories", "0001_initial"),
        ("tasks", "0003_held_ends_and_retried_keys"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
