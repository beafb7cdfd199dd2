-- The statements that move tasks between states. tasks/queue.py is their only caller.
-- Every time is the database's clock_timestamp(), never the application's clock, and every
-- write of a run is fenced by the run's token: a worker that lost its task changes nothing.
-- Named parameters use the %(name)s style of psycopg and Django cursors.

-- name: lock_dependencies
-- Lock the dependencies of a new task so that none finishes or is cancelled until it is linked.
SELECT id, status, next_retry_time
FROM tasks
WHERE id = ANY(%(ids)s::uuid[])
ORDER BY id
FOR SHARE;

-- name: insert_tasks
-- Insert new tasks of one type, one per payload: pending, or canceled at once when a
-- dependency already failed or was canceled. Wakes the waiting pools on commit when they are
-- ready (Postgres folds repeated notifications within a transaction into one).
WITH inserted AS (
    INSERT INTO tasks (id, type, payload, status, error, cancel_attempted, queued_at, org_id,
                       account_id, object_uuid, object_type, request_id, priority, retries,
                       dependencies_left)
    SELECT new.id, %(type)s::text, new.payload, %(status)s::text, %(error)s::text, %(status)s::text = 'canceled',
           clock_timestamp(), %(org_id)s::text, %(account_id)s::text, %(object_uuid)s::uuid, %(object_type)s::text,
           %(request_id)s::text, %(priority)s::int, 0, %(dependencies_left)s::int
    FROM unnest(%(ids)s::uuid[], %(payloads)s::jsonb[]) AS new (id, payload)
)
SELECT pg_notify('tasks', '') WHERE %(status)s::text = 'pending' AND %(dependencies_left)s::int = 0;

-- name: insert_dependencies
-- Link new tasks to their dependencies.
INSERT INTO task_dependencies (task_id, dependency_id)
SELECT task_id, dependency_id
FROM unnest(%(ids)s::uuid[]) AS task_id CROSS JOIN unnest(%(dependency_ids)s::uuid[]) AS dependency_id;

-- name: claim
-- Claim up to `limit` ready tasks of the given types, highest priority first, then oldest;
-- each gets a new token and a heartbeat row in the same statement.
WITH picked AS (
    SELECT id
    FROM tasks
    WHERE status = 'pending' AND dependencies_left = 0 AND type = ANY(%(types)s::text[])
    ORDER BY priority DESC, queued_at, id
    LIMIT %(limit)s::int
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE tasks t
    SET status = 'running', token = gen_random_uuid(), started_at = clock_timestamp()
    FROM picked
    WHERE t.id = picked.id
    RETURNING t.id, t.type, t.payload::text, t.queued_at, t.started_at, t.org_id, t.account_id,
              t.object_uuid, t.object_type, t.token, t.request_id, t.retries, t.priority
), beats AS (
    INSERT INTO task_heartbeats (token, id, heartbeat)
    SELECT token, id, clock_timestamp() FROM claimed
)
SELECT * FROM claimed;

-- name: complete
-- Finish runs as completed: those that still own their task. Their heartbeats are dropped by
-- release_dependents, which always follows in the same transaction.
UPDATE tasks t
SET status = 'completed', finished_at = clock_timestamp(), error = NULL, next_retry_time = NULL
FROM unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS run (id, token)
WHERE t.id = run.id AND t.token = run.token AND t.status = 'running'
RETURNING t.id;

-- name: release_dependents
-- Count the runs' tasks that are now completed off their dependents, and wake the pools if
-- one became ready. It runs as a statement of its own after `complete`, so that its
-- snapshot sees a dependent whose enqueue was waiting on a completed task's row lock.
-- A completed run's heartbeat is dropped here, and only a run whose heartbeat it drops is
-- counted: an end recorded twice (re-sent after a commit whose answer was lost) is counted
-- once. Dependents are locked in id order, so that pools completing parents of the same
-- children do not deadlock.
WITH parents AS (
    DELETE FROM task_heartbeats h
    USING tasks t, unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS run (id, token)
    WHERE h.token = run.token AND t.id = run.id AND t.token = run.token AND t.status = 'completed'
    RETURNING t.id
), counts AS (
    SELECT task_id, count(*) AS n
    FROM task_dependencies
    WHERE dependency_id IN (SELECT id FROM parents)
    GROUP BY task_id
), locked AS (
    SELECT t.id FROM tasks t JOIN counts ON counts.task_id = t.id ORDER BY t.id FOR UPDATE OF t
), released AS (
    UPDATE tasks t
    SET dependencies_left = t.dependencies_left - counts.n
    FROM counts JOIN locked ON locked.id = counts.task_id
    WHERE t.id = counts.task_id
    RETURNING t.dependencies_left, t.status
)
SELECT pg_notify('tasks', '')
WHERE EXISTS (SELECT FROM released WHERE dependencies_left = 0 AND status = 'pending');

-- name: fail
-- Finish a run as failed, if the run still owns its task. A requeueable task under the retry
-- cap gets its next retry time: now + upper_bound / (max_retries - retries + 1).
WITH failed AS (
    UPDATE tasks
    SET status = 'failed', finished_at = clock_timestamp(), error = %(error)s::text,
        next_retry_time = CASE
            WHEN %(requeueable)s::bool AND retries < %(max_retries)s::int AND NOT cancel_attempted
            THEN clock_timestamp()
                 + make_interval(secs => floor(%(upper_bound)s::float8 / (%(max_retries)s::int - retries + 1)))
        END
    WHERE id = %(id)s::uuid AND token = %(token)s::uuid AND status = 'running'
    RETURNING id, next_retry_time
), beat AS (
    DELETE FROM task_heartbeats WHERE token = %(token)s::uuid AND EXISTS (SELECT FROM failed)
)
SELECT id, next_retry_time FROM failed;

-- name: requeue
-- Put a run's task back to pending, if the run still owns it. A requeue that counts as a
-- retry (dead worker) only happens under the retry cap; a shutdown requeue does not count.
WITH requeued AS (
    UPDATE tasks
    SET status = 'pending', token = NULL, started_at = NULL, error = NULL, next_retry_time = NULL,
        retries = retries + %(count_retry)s::int
    WHERE id = %(id)s::uuid AND token = %(token)s::uuid AND status = 'running'
      AND (%(count_retry)s::int = 0 OR retries < %(max_retries)s::int)
    RETURNING id
), beat AS (
    DELETE FROM task_heartbeats WHERE token = %(token)s::uuid AND EXISTS (SELECT FROM requeued)
)
SELECT id, pg_notify('tasks', '') FROM requeued;

-- name: cancel
-- Cancel a task: a pending or running one becomes canceled; any task gets cancel_attempted,
-- which also stops the automatic retry of a failed one. A running one is told on cancel_task.
-- Returns the status the task had before. Its heartbeat is dropped by drop_heartbeats.
WITH target AS (
    SELECT id, status, next_retry_time FROM tasks WHERE id = %(id)s::uuid FOR UPDATE
), updated AS (
    UPDATE tasks t
    SET cancel_attempted = true,
        next_retry_time = NULL,
        status = CASE WHEN target.status IN ('pending', 'running') THEN 'canceled' ELSE t.status END,
        error = CASE WHEN target.status IN ('pending', 'running') THEN 'task canceled' ELSE t.error END
    FROM target
    WHERE t.id = target.id
)
SELECT status, next_retry_time,
       CASE WHEN status = 'running' THEN pg_notify('cancel_task', id::text) END
FROM target;

-- name: cancel_dependents
-- One level of the cancel cascade: cancel the unfinished dependents of the given tasks and
-- tell the running ones on cancel_task. The caller repeats it with the returned ids; each
-- level is a statement of its own so that its snapshot sees dependents linked concurrently.
-- Heartbeats are dropped afterwards by drop_heartbeats.
WITH doomed AS (
    SELECT t.id, t.status
    FROM tasks t JOIN task_dependencies d ON d.task_id = t.id
    WHERE d.dependency_id = ANY(%(ids)s::uuid[]) AND t.status IN ('pending', 'running')
    ORDER BY t.id  -- the order release_dependents locks them in
    FOR UPDATE OF t
), canceled AS (
    UPDATE tasks t
    SET status = 'canceled', error = %(reason)s::text, cancel_attempted = true, next_retry_time = NULL
    FROM doomed
    WHERE t.id = doomed.id
)
SELECT id, CASE WHEN status = 'running' THEN pg_notify('cancel_task', id::text) END
FROM (SELECT DISTINCT id, status FROM doomed) AS d;

-- name: drop_heartbeats
-- Drop the heartbeats of canceled tasks. A statement of its own, after the cancel: the cancel's
-- snapshot predates its wait for the row lock, so it cannot see the heartbeat that a claim
-- holding that lock committed meanwhile.
DELETE FROM task_heartbeats WHERE id = ANY(%(ids)s::uuid[]);

-- name: refresh_heartbeats
-- Beat for the runs a pool holds; a token missing from the result lost its task.
UPDATE task_heartbeats h
SET heartbeat = clock_timestamp()
FROM tasks t
WHERE h.token = ANY(%(tokens)s::uuid[]) AND t.id = h.id AND t.token = h.token AND t.status = 'running'
RETURNING h.token;

-- name: stale_heartbeats
-- Heartbeats older than the timeout: their worker died or stalled. Locked so that two pools
-- never rescue the same run, with their tasks: a complete or a cancel locks the task and then
-- the heartbeat, so a rescue holding only the heartbeat would deadlock with it; the rows of a
-- run being finished are skipped instead. Ages that span a server restart say nothing of the
-- workers, which could not beat while it was down: after one, every run has a full timeout to
-- beat again.
SELECT h.id, h.token
FROM task_heartbeats h JOIN tasks t ON t.id = h.id
WHERE h.heartbeat < clock_timestamp() - make_interval(secs => %(timeout)s::float8)
    AND pg_postmaster_start_time() < clock_timestamp() - make_interval(secs => %(timeout)s::float8)
ORDER BY h.heartbeat
LIMIT 100
FOR UPDATE OF h, t SKIP LOCKED;

-- name: delete_heartbeat
-- Drop a heartbeat whose run no longer owns its task.
DELETE FROM task_heartbeats WHERE token = %(token)s::uuid;

-- name: retry_failed
-- Put failed tasks whose retry time has come back to pending, counting a retry.
WITH due AS (
    SELECT id
    FROM tasks
    -- statement_timestamp(), being stable, lets the retry index bound the scan.
    WHERE status = 'failed' AND next_retry_time <= statement_timestamp() AND NOT cancel_attempted
    ORDER BY next_retry_time
    LIMIT 1000
    FOR UPDATE SKIP LOCKED
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
