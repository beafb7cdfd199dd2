-- The statements that move tasks between states. tasks/queue.py is their only caller.
-- Every time is the database's clock_timestamp(), never the application's clock, and every
-- write of a run is fenced by the run's token: a worker that lost its task changes nothing.
-- Named parameters use the %(name)s style of psycopg and Django cursors.
--
-- Locks (docs/queue.md, "Locks"): task rows before heartbeat rows; task rows in insertion
-- order (`seq`), which puts a task before its dependents. Ending a task (complete, fail,
-- cancel) or deleting it (the cleanup) locks its row FOR UPDATE, which conflicts with the FOR
-- KEY SHARE of an enqueue linking a new dependent to it, so an ending and a new edge are
-- always ordered. Every other write takes FOR NO KEY UPDATE, which an enqueue does not
-- block. The pool's statements never wait for a task row (SKIP LOCKED): what they cannot lock
-- now, the pool records later.

-- name: lock_dependencies
-- Lock the dependencies of new tasks, in insertion order, with the lock their new edges'
-- foreign keys take anyway: none of them can end until the edges commit, and one that is
-- ending is waited for and then seen with its final status.
SELECT id, status, next_retry_time
FROM tasks
WHERE id = ANY(%(ids)s::uuid[])
ORDER BY seq
FOR KEY SHARE;

-- name: insert_tasks
-- Insert new tasks of one type, one per payload: pending, or canceled at once when a
-- dependency already failed or was canceled. A task whose unique key an active task holds
-- (pending, running, or failed and waiting for its automatic retry) is not inserted. Wakes the waiting pools on commit when a ready task was inserted
-- (Postgres folds repeated notifications within a transaction into one).
WITH inserted AS (
    INSERT INTO tasks (id, type, payload, status, error, cancel_attempted, queued_at, org_id,
                       account_id, object_uuid, object_type, request_id, priority, retries,
                       dependencies_left, unique_key)
    SELECT new.id, %(type)s::text, new.payload, %(status)s::text, %(error)s::text, %(status)s::text = 'canceled',
           clock_timestamp(), %(org_id)s::text, %(account_id)s::text, %(object_uuid)s::uuid, %(object_type)s::text,
           %(request_id)s::text, %(priority)s::int, 0, %(dependencies_left)s::int, %(unique_key)s::text
    FROM unnest(%(ids)s::uuid[], %(payloads)s::jsonb[]) AS new (id, payload)
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL
          AND (status IN ('pending', 'running') OR (status = 'failed' AND next_retry_time IS NOT NULL))
        DO NOTHING
    RETURNING id
)
SELECT inserted.id
FROM inserted
LEFT JOIN (
    SELECT pg_notify('tasks', '')
    WHERE %(status)s::text = 'pending' AND %(dependencies_left)s::int = 0 AND EXISTS (SELECT FROM inserted)
) AS woken ON true;

-- name: insert_dependencies
-- Link new tasks to their dependencies.
INSERT INTO task_dependencies (task_id, dependency_id)
SELECT task_id, dependency_id
FROM unnest(%(ids)s::uuid[]) AS task_id CROSS JOIN unnest(%(dependency_ids)s::uuid[]) AS dependency_id;

-- name: unique_key_holder
-- The active task that holds a unique key.
SELECT id FROM tasks
WHERE unique_key = %(unique_key)s::text
  AND (status IN ('pending', 'running') OR (status = 'failed' AND next_retry_time IS NOT NULL));

-- name: claim
-- Claim up to `limit` ready tasks of the given types, highest priority first, then oldest;
-- each gets a new token and a heartbeat row in the same statement. The ready index leads
-- with the type, so each served type is read on its own (a backlog of other types costs
-- nothing), without locking, `window` heads each; of those, the first `limit` that no one
-- else holds are locked (LockRows under the Limit: only those). `candidates` says how many
-- heads were read (one row with it and no task when none was claimed): more than claimed,
-- another transaction holds the rest, for now.
-- Each head is then reached by its primary key whatever the statistics say (they lag behind a
-- burst of new tasks, and then any index over pending tasks looks as cheap as the key): the
-- lock re-checks the status but not `dependencies_left`, which never rises again once zero, so
-- that `tasks_ready_idx` cannot serve this step either, and `tasks_status_queued_idx` leaves
-- pending tasks out.
WITH candidates AS MATERIALIZED (
    SELECT ready.id
    FROM unnest(%(types)s::text[]) AS served (type)
    CROSS JOIN LATERAL (
        SELECT id
        FROM tasks
        WHERE type = served.type AND status = 'pending' AND dependencies_left = 0
        ORDER BY priority DESC, queued_at, id
        LIMIT %(window)s::int
    ) AS ready
), picked AS MATERIALIZED (
    SELECT t.id
    FROM tasks t
    WHERE t.id = ANY (ARRAY(SELECT id FROM candidates)) AND t.status = 'pending'
    ORDER BY t.priority DESC, t.queued_at, t.id
    LIMIT %(limit)s::int
    FOR NO KEY UPDATE SKIP LOCKED
), claimed AS (
    UPDATE tasks t
    SET status = 'running', token = gen_random_uuid(), started_at = clock_timestamp()
    FROM picked
    WHERE t.id = picked.id
    RETURNING t.id, t.type, t.payload::text, t.queued_at, t.started_at, t.org_id, t.account_id,
              t.object_uuid, t.object_type, t.token, t.request_id, t.retries, t.priority
), beats AS (
    INSERT INTO task_heartbeats (token, id, heartbeat, worker)
    SELECT token, id, clock_timestamp(), %(worker)s::text FROM claimed
)
SELECT claimed.*, counted.candidates
FROM (SELECT count(*) AS candidates FROM candidates) AS counted
LEFT JOIN claimed ON true;

-- name: lock_ends
-- Lock the tasks of runs whose end is about to be recorded (FOR UPDATE: see the top of this
-- file), skipping those another transaction holds, and drop the heartbeats of those locked:
-- within this transaction, a task still running with its run's token but without that
-- heartbeat is one this transaction holds. For each run: whether it still owns its task,
-- and whether it was locked.
WITH run AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS run (id, token)
), locked AS MATERIALIZED (
    SELECT t.id
    FROM tasks t JOIN run ON run.id = t.id AND run.token = t.token
    WHERE t.status = 'running'
    ORDER BY t.seq
    FOR UPDATE OF t SKIP LOCKED
), dropped AS (
    DELETE FROM task_heartbeats h
    USING run
    WHERE h.token = run.token AND run.id IN (SELECT id FROM locked)
)
SELECT run.id,
       EXISTS (SELECT FROM tasks t WHERE t.id = run.id AND t.token = run.token AND t.status = 'running') AS owned,
       run.id IN (SELECT id FROM locked) AS locked
FROM run;

-- name: complete_ends
-- Complete the runs that lock_ends locked in this transaction and count them off their
-- dependents. A statement of its own after lock_ends: its snapshot sees every edge linked
-- before the lock, and no edge can be linked after it. A dependent that another transaction
-- holds (a caller cancelling it) cannot be counted now: the runs it depends on are left
-- running, their heartbeats back, for the pool to record later. Wakes the pools when a
-- dependent became ready. Returns each run locked, and whether it was completed.
WITH run AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS run (id, token)
), ending AS (
    SELECT run.id, run.token
    FROM run JOIN tasks t ON t.id = run.id AND t.token = run.token
    WHERE t.status = 'running' AND NOT EXISTS (SELECT FROM task_heartbeats h WHERE h.token = run.token)
), edges AS (
    SELECT d.task_id, d.dependency_id FROM task_dependencies d WHERE d.dependency_id IN (SELECT id FROM ending)
), countable AS MATERIALIZED (
    SELECT t.id FROM tasks t WHERE t.id IN (SELECT task_id FROM edges) ORDER BY t.seq FOR NO KEY UPDATE SKIP LOCKED
), held_back AS (
    SELECT DISTINCT dependency_id AS id FROM edges WHERE task_id NOT IN (SELECT id FROM countable)
), completed AS (
    UPDATE tasks t
    SET status = 'completed', finished_at = clock_timestamp(), error = NULL, next_retry_time = NULL
    FROM ending
    WHERE t.id = ending.id AND ending.id NOT IN (SELECT id FROM held_back)
    RETURNING t.id
), restored AS (
    INSERT INTO task_heartbeats (token, id, heartbeat, worker)
    SELECT token, id, clock_timestamp(), %(worker)s::text FROM ending WHERE id IN (SELECT id FROM held_back)
), counts AS (
    SELECT task_id, count(*) AS n FROM edges WHERE dependency_id NOT IN (SELECT id FROM held_back) GROUP BY task_id
), released AS (
    UPDATE tasks t
    SET dependencies_left = t.dependencies_left - counts.n
    FROM counts
    WHERE t.id = counts.task_id
    RETURNING t.dependencies_left, t.status
)
SELECT ending.id, ending.id IN (SELECT id FROM completed) AS completed
FROM ending
LEFT JOIN (
    SELECT pg_notify('tasks', '')
    WHERE EXISTS (SELECT FROM released WHERE dependencies_left = 0 AND status = 'pending')
) AS woken ON true;

-- name: fail
-- Finish as failed a run that lock_ends locked in this transaction. A requeueable task under
-- the retry cap gets its next retry time: now + upper_bound / (max_retries - retries + 1).
UPDATE tasks
SET status = 'failed', finished_at = clock_timestamp(), error = %(error)s::text,
    next_retry_time = CASE
        WHEN %(requeueable)s::bool AND retries < %(max_retries)s::int AND NOT cancel_attempted
        THEN clock_timestamp()
             + make_interval(secs => floor(%(upper_bound)s::float8 / (%(max_retries)s::int - retries + 1)))
    END
WHERE id = %(id)s::uuid AND token = %(token)s::uuid AND status = 'running'
RETURNING id, next_retry_time;

-- name: requeue
-- Put a run's task back to pending, if the run still owns it and no one else holds its row.
-- A requeue that counts as a retry (dead worker) only happens under the retry cap; a
-- shutdown requeue does not count. Says whether it requeued, and whether the run owned its
-- task and was under the cap before.
WITH target AS MATERIALIZED (
    SELECT id
    FROM tasks
    WHERE id = %(id)s::uuid AND token = %(token)s::uuid AND status = 'running'
      AND (%(count_retry)s::int = 0 OR retries < %(max_retries)s::int)
    FOR NO KEY UPDATE SKIP LOCKED
), requeued AS (
    UPDATE tasks t
    SET status = 'pending', token = NULL, started_at = NULL, error = NULL, next_retry_time = NULL,
        retries = t.retries + %(count_retry)s::int
    FROM target
    WHERE t.id = target.id
    RETURNING t.id
), beat AS (
    DELETE FROM task_heartbeats WHERE token = %(token)s::uuid AND EXISTS (SELECT FROM requeued)
)
SELECT EXISTS (SELECT FROM requeued) AS requeued, owner.owned, owner.under_cap
FROM (
    SELECT count(*) > 0 AS owned, coalesce(bool_and(retries < %(max_retries)s::int), false) AS under_cap
    FROM tasks
    WHERE id = %(id)s::uuid AND token = %(token)s::uuid AND status = 'running'
) AS owner
LEFT JOIN (SELECT pg_notify('tasks', '') WHERE EXISTS (SELECT FROM requeued)) AS woken ON true;

-- name: lock_task
-- Lock a task that a caller cancels (FOR UPDATE: see the top of this file), without waiting:
-- `locked` is false when another transaction holds it.
WITH locked AS MATERIALIZED (
    SELECT id, status, next_retry_time FROM tasks WHERE id = %(id)s::uuid FOR UPDATE SKIP LOCKED
)
SELECT t.id, coalesce(locked.status, t.status) AS status, locked.next_retry_time, locked.id IS NOT NULL AS locked
FROM tasks t LEFT JOIN locked ON locked.id = t.id
WHERE t.id = %(id)s::uuid;

-- name: cancel_task
-- Cancel a task locked by lock_task: a pending or running one becomes canceled; any task
-- gets cancel_attempted, which also stops the automatic retry of a failed one. A running one
-- is told on cancel_task. Its heartbeat is left to the run's pool, which drops it when the
-- handler has stopped.
UPDATE tasks
SET cancel_attempted = true,
    next_retry_time = NULL,
    status = CASE WHEN status IN ('pending', 'running') THEN 'canceled' ELSE status END,
    error = CASE WHEN status IN ('pending', 'running') THEN 'task canceled' ELSE error END
WHERE id = %(id)s::uuid
RETURNING CASE WHEN %(previous)s::text = 'running' THEN pg_notify('cancel_task', id::text) END;

-- name: unfinished_descendants
-- Every pending or running task that depends on the given ones, directly or not.
WITH RECURSIVE descendants (id) AS (
    SELECT d.task_id FROM task_dependencies d WHERE d.dependency_id = ANY(%(ids)s::uuid[])
    UNION
    SELECT d.task_id FROM task_dependencies d JOIN descendants ON d.dependency_id = descendants.id
)
SELECT t.id FROM tasks t JOIN descendants USING (id) WHERE t.status IN ('pending', 'running');

-- name: lock_unfinished_or_skip
-- Lock pending or running tasks in insertion order, skipping those another transaction
-- holds. Returns each task still unfinished, and whether it was locked.
WITH locked AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('pending', 'running')
    ORDER BY seq
    FOR UPDATE SKIP LOCKED
)
SELECT t.id, t.id IN (SELECT id FROM locked) AS locked
FROM tasks t
WHERE t.id = ANY(%(ids)s::uuid[]) AND t.status IN ('pending', 'running');

-- name: cancel_locked
-- Cancel tasks this transaction has locked, and tell the running ones on cancel_task.
UPDATE tasks
SET status = 'canceled', error = %(reason)s::text, cancel_attempted = true, next_retry_time = NULL
WHERE id = ANY(%(ids)s::uuid[])
RETURNING id, CASE WHEN started_at IS NOT NULL THEN pg_notify('cancel_task', id::text) END;

-- name: drop_heartbeats
-- Drop the heartbeats of runs that stopped without an end to record (canceled, or lost).
DELETE FROM task_heartbeats WHERE token = ANY(%(tokens)s::uuid[]);

-- name: refresh_heartbeats
-- Beat for the runs a pool holds, never waiting: a heartbeat row that another transaction
-- holds (this pool's step recording the run's end, another pool's rescue) keeps its time
-- until the next beat. Returns the runs that no longer own their task.
WITH run AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS run (id, token)
), beating AS MATERIALIZED (
    SELECT h.token
    FROM task_heartbeats h JOIN run ON run.token = h.token
    FOR NO KEY UPDATE OF h SKIP LOCKED
), refreshed AS (
    UPDATE task_heartbeats h SET heartbeat = clock_timestamp() FROM beating WHERE h.token = beating.token
)
SELECT run.id, run.token
FROM run
WHERE NOT EXISTS (SELECT FROM tasks t WHERE t.id = run.id AND t.token = run.token AND t.status = 'running');

-- name: hand_over_ends
-- Leave the ends of runs that a stopping pool could not record (another transaction held
-- their tasks) in their heartbeat rows, for the next janitor pass of any pool to record.
UPDATE task_heartbeats h
SET ending = run.ending
FROM unnest(%(tokens)s::uuid[], %(endings)s::jsonb[]) AS run (token, ending)
WHERE h.token = run.token
RETURNING h.token;

-- name: stale_heartbeats
-- Heartbeats with an end handed over to record, then those older than the timeout: their
-- worker died or stalled. Locked with their tasks, skipping those held by others (a run being
-- finished), so that two pools never rescue the same run. Ages that span an outage say
-- nothing of the workers, which could not beat meanwhile: a janitor rescues a stale run only
-- once its own session is a whole timeout old, so after a restart or a failover every run has
-- a full timeout to beat again.
SELECT h.id, h.token, h.ending
FROM task_heartbeats h JOIN tasks t ON t.id = h.id
WHERE h.ending IS NOT NULL
   OR (h.heartbeat < clock_timestamp() - make_interval(secs => %(timeout)s::float8)
       AND (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
           < clock_timestamp() - make_interval(secs => %(timeout)s::float8))
ORDER BY h.ending IS NULL, h.heartbeat
LIMIT 100
FOR NO KEY UPDATE OF t SKIP LOCKED
FOR UPDATE OF h SKIP LOCKED;

-- name: delete_heartbeat
-- Drop a heartbeat whose run no longer owns its task.
DELETE FROM task_heartbeats WHERE token = %(token)s::uuid;

-- name: retry_failed
-- Put failed tasks whose retry time has come back to pending, counting a retry.
WITH due AS MATERIALIZED (
    SELECT id
    FROM tasks
    -- statement_timestamp(), being stable, lets the retry index bound the scan.
    WHERE status = 'failed' AND next_retry_time <= statement_timestamp() AND NOT cancel_attempted
    ORDER BY next_retry_time
    LIMIT 1000
    FOR NO KEY UPDATE SKIP LOCKED
), retried AS (
    UPDATE tasks t
    SET status = 'pending', started_at = NULL, finished_at = NULL, token = NULL, error = NULL,
        next_retry_time = NULL, retries = t.retries + 1
    FROM due
    WHERE t.id = due.id
    RETURNING t.id
)
SELECT id, pg_notify('tasks', '') FROM retried;

-- name: update_payload
-- Save a run's progress, if the run still owns its task.
UPDATE tasks SET payload = %(payload)s::jsonb
WHERE id = %(id)s::uuid AND token = %(token)s::uuid AND status = 'running'
RETURNING id;

-- name: requeue_failed
-- Put a failed task back to pending at once, by hand (the admin, a maintenance job), with the
-- whole retry budget again (the original's retry job resets it: a task that had used it up
-- would otherwise fail for good at its first crash), without waiting for a transaction that
-- holds it. Says the status the task had and whether it was locked; no row when there is no
-- such task. When another active task holds its unique key, the statement fails on
-- tasks_unique_key_active (the caller's savepoint undoes it).
WITH target AS MATERIALIZED (
    SELECT id, status FROM tasks WHERE id = %(id)s::uuid FOR NO KEY UPDATE SKIP LOCKED
), requeued AS (
    UPDATE tasks t
    SET status = 'pending', started_at = NULL, finished_at = NULL, token = NULL, error = NULL,
        next_retry_time = NULL, retries = 0
    FROM target
    WHERE t.id = target.id AND target.status = 'failed'
    RETURNING t.id
)
SELECT coalesce(target.status, t.status) AS status, target.id IS NOT NULL AS locked
FROM tasks t
LEFT JOIN target ON target.id = t.id
LEFT JOIN (SELECT pg_notify('tasks', '') WHERE EXISTS (SELECT FROM requeued)) AS woken ON true
WHERE t.id = %(id)s::uuid;

-- name: orgs
-- The organisations that have tasks, in order, read as a loose index scan: one index descent
-- per organisation, however many tasks each has.
WITH RECURSIVE orgs (org_id) AS (
    (SELECT org_id FROM tasks WHERE org_id IS NOT NULL ORDER BY org_id LIMIT 1)
    UNION ALL
    SELECT (SELECT t.org_id FROM tasks t WHERE t.org_id > orgs.org_id ORDER BY t.org_id LIMIT 1)
    FROM orgs
    WHERE orgs.org_id IS NOT NULL
)
SELECT org_id FROM orgs WHERE org_id IS NOT NULL LIMIT %(limit)s::int;

-- name: cleanup_window
-- The cleanup's next window: the `limit` tasks enqueued after the key (queued_at, id) of the
-- last window and longer ago than the shortest retention, oldest first, each with whether it
-- is due for deletion: finished for good (completed; failed with no retry to come; canceled)
-- for longer than its type's retention (`types` and their ages in seconds, a NULL age keeping
-- them; any other type has the `default_*` ages), counted from its end, or from its enqueue
-- for a canceled task, which has none; and guarded by nothing: no heartbeat (a canceled run
-- whose pool has not stopped it yet) and no live dependent (pending, running, or failed and
-- waiting for its retry). Reads only, locks nothing; statement_timestamp(), being stable,
-- lets tasks_queued_idx bound the scan (a task ends after its enqueue).
WITH rule AS (
    SELECT *
    FROM unnest(%(types)s::text[], %(completed)s::float8[], %(failed)s::float8[], %(canceled)s::float8[])
        AS rule (type, completed, failed, canceled)
), seen AS (
    SELECT t.id, t.type, t.status, t.queued_at, t.finished_at, t.next_retry_time
    FROM tasks t
    WHERE t.queued_at < statement_timestamp() - make_interval(secs => %(shortest)s::float8)
      AND t.queued_at >= %(after_queued_at)s::timestamptz
      AND (t.queued_at, t.id) > (%(after_queued_at)s::timestamptz, %(after_id)s::uuid)
    ORDER BY t.queued_at, t.id
    LIMIT %(limit)s::int
), aged AS (
    SELECT seen.*,
           CASE seen.status
               WHEN 'completed' THEN seen.finished_at
               WHEN 'failed' THEN CASE WHEN seen.next_retry_time IS NULL THEN seen.finished_at END
               WHEN 'canceled' THEN seen.queued_at
           END AS since,
           CASE seen.status
               WHEN 'completed' THEN CASE WHEN rule.type IS NULL THEN %(default_completed)s::float8 ELSE rule.completed END
               WHEN 'failed' THEN CASE WHEN rule.type IS NULL THEN %(default_failed)s::float8 ELSE rule.failed END
               WHEN 'canceled' THEN CASE WHEN rule.type IS NULL THEN %(default_canceled)s::float8 ELSE rule.canceled END
           END AS kept
    FROM seen LEFT JOIN rule ON rule.type = seen.type
)
SELECT aged.id, aged.type, aged.status, aged.queued_at, aged.finished_at,
       coalesce(aged.since < statement_timestamp() - make_interval(secs => aged.kept), false)
       AND NOT EXISTS (SELECT FROM task_heartbeats h WHERE h.id = aged.id)
       AND live.dependent IS NULL AS due
FROM aged
-- Per row, by the edges' index: a hashed NOT EXISTS would read every live task at each window.
LEFT JOIN LATERAL (
    SELECT d.task_id AS dependent
    FROM task_dependencies d JOIN tasks c ON c.id = d.task_id
    WHERE d.dependency_id = aged.id
      AND (c.status IN ('pending', 'running') OR (c.status = 'failed' AND c.next_retry_time IS NOT NULL))
    LIMIT 1
) AS live ON true
ORDER BY aged.queued_at, aged.id;

-- name: cleanup_begin
-- Begin a cleanup batch: take the cleanup's advisory lock for this transaction, without
-- waiting (`locked` is false when another cleanup's batch holds it), and bound any wait for a
-- lock (a row of another table that references a deleted task, set NULL by its foreign key).
-- 7218553 is the cleanup's key: nothing else may take it.
SELECT pg_try_advisory_xact_lock(7218553) AS locked, set_config('lock_timeout', %(lock_timeout)s::text, true);

-- name: cleanup_lock
-- Lock the tasks cleanup_window found due that are still as it saw them (same status and
-- end, no retry to come), in insertion order, skipping those another transaction holds (an
-- enqueue linking a new dependent to one, a caller cancelling one): the next pass sees them.
SELECT t.id
FROM tasks t
JOIN unnest(%(ids)s::uuid[], %(statuses)s::text[], %(finished)s::timestamptz[]) AS due (id, status, finished_at)
    ON due.id = t.id
WHERE t.status = due.status AND t.finished_at IS NOT DISTINCT FROM due.finished_at
  AND (t.status <> 'failed' OR t.next_retry_time IS NULL)
ORDER BY t.seq
FOR UPDATE OF t SKIP LOCKED;

-- name: cleanup_delete
-- Delete the tasks cleanup_lock locked, but those guarded, looked at again here: a statement
-- of its own after the lock, so its snapshot sees every dependent linked before the lock (and
-- none can be linked after it). Their edges go with them (ON DELETE CASCADE). How many of
-- each type and status were deleted.
WITH deleted AS (
    DELETE FROM tasks t
    WHERE t.id = ANY(%(ids)s::uuid[])
      AND NOT EXISTS (SELECT FROM task_heartbeats h WHERE h.id = t.id)
      AND NOT EXISTS (
          SELECT FROM task_dependencies d JOIN tasks c ON c.id = d.task_id
          WHERE d.dependency_id = t.id
            AND (c.status IN ('pending', 'running') OR (c.status = 'failed' AND c.next_retry_time IS NOT NULL))
      )
    RETURNING t.type, t.status
)
SELECT type, status, count(*) AS deleted FROM deleted GROUP BY type, status;

-- name: stats_due
-- Whether this session takes the table's statistics now: no other session is taking them (an
-- advisory lock held to the end of this transaction) and the stored ones are older than
-- `max_age` seconds. So one pool at a time reads the table, however many processes scrape.
SELECT pg_try_advisory_xact_lock(hashtext('tasks.task_stats'))
       AND NOT EXISTS (
           SELECT FROM task_stats
           WHERE taken_at > clock_timestamp() - make_interval(secs => %(max_age)s::float8)
       ) AS due;

-- name: take_stats
-- Count the tasks by status and type, with the waits since queued_at of the ready ones (pending,
-- no dependency left: a blocked task waits for its dependency, not for a worker), and store them
-- for the /metrics of every process. The counts are an index-only scan of tasks_multi_idx (it
-- holds status and type); the waits one of tasks_ready_idx, which holds the ready tasks only.
INSERT INTO task_stats (id, taken_at, stats)
WITH counts AS (
    SELECT status, type, count(*) AS count FROM tasks GROUP BY status, type
), waits AS (
    SELECT type, count(*) AS ready,
           extract(epoch FROM sum(statement_timestamp() - queued_at))::float8 AS wait_sum,
           extract(epoch FROM statement_timestamp() - min(queued_at))::float8 AS oldest_wait
    FROM tasks
    WHERE status = 'pending' AND dependencies_left = 0
    GROUP BY type
)
SELECT 1, statement_timestamp(), coalesce(jsonb_agg(jsonb_build_object(
           'status', counts.status, 'type', counts.type, 'count', counts.count, 'ready', waits.ready,
           'wait_sum', waits.wait_sum, 'oldest_wait', waits.oldest_wait
       )), '[]'::jsonb)
FROM counts LEFT JOIN waits ON counts.status = 'pending' AND waits.type = counts.type
ON CONFLICT (id) DO UPDATE SET taken_at = excluded.taken_at, stats = excluded.stats;

-- name: stats
-- The table's statistics as last taken.
SELECT taken_at, stats::text AS stats FROM task_stats WHERE id = 1;
