-- segments: the statement behind each route and report, against sql/schema.sql + sql/buckets.sql.
--
-- Format: each statement starts with a `-- name: <name>` line; the lines up to the next
-- header are its SQL (tests/support/sql_queries.py loads them into a dict name -> SQL and
-- drops whole-line comments). Parameters are psycopg's named style, %(name)s, so no SQL here
-- uses a literal percent sign (modulo is mod()). Timestamps come in as %(now)s, never now(),
-- so a run is reproducible with a fixed clock.
--
-- A change of one user's segments (POST /users/{user_id}/segments) is one transaction:
--   lock_user -> missing_segments (404 if any row) -> expire_memberships (this user)
--   -> add_user_segment per added slug -> remove_user_segment per removed slug -> active_segments.
-- lock_user is what serialises a user's changes: add/remove read the user's row without FOR
-- UPDATE, because a row the same statement then upserts would be skipped by the lock.
-- Creating or patching a segment in an exclusion group runs lock_exclusion_group first.
--
-- An import (POST /segments/{slug}/imports) is create_import, then start_import when the upload
-- arrives, then each data line of the file (not blank, not a `user_id` header on line 1), each in
-- its own transaction, in any order and as often as it is retried:
--   import_line_error (NULL: a user id) -> a bad line: reject_import_line;
--   a good one: lock_user -> expire_memberships (this user) -> apply_import_line (fail_import if it
--   says `stop`);
-- then finish_import once every line has its outcome. expire_imports ends links never used.

-- name: lock_user
-- Concurrent changes of one user's segments queue here instead of losing each other's writes.
-- User ids are positive, so they never meet the negative keys of lock_exclusion_group.
SELECT pg_advisory_xact_lock(%(user_id)s::bigint);

-- name: lock_exclusion_group
SELECT pg_advisory_xact_lock(-1 - abs(hashtext(%(exclusion_group)s)::bigint));

-- name: create_segment
-- A new generation of the slug. Its range: [0, p) without a group, else the lowest free gap of
-- the group that fits. No row back: no gap fits (409, see largest_free_gap). A live slug: the
-- segment_live_slug unique violation (409).
WITH next AS (
    SELECT coalesce(max(generation), 0) + 1 AS generation FROM segment WHERE slug = %(slug)s
), wanted AS (
    SELECT (%(auto_percent)s::numeric(5, 2) * 100)::integer AS width
), placed AS (
    SELECT CASE
        WHEN wanted.width IS NULL THEN NULL
        WHEN %(exclusion_group)s::text IS NULL THEN 0
        ELSE segments_lowest_fitting_start(
            (SELECT array_agg(int4range(bucket_start, bucket_end)) FROM segment
             WHERE exclusion_group = %(exclusion_group)s AND deleted_at IS NULL),
            wanted.width)
    END AS bucket_start, wanted.width
    FROM wanted
), created AS (
    INSERT INTO segment (slug, generation, description, auto_percent, exclusion_group,
                         bucket_start, bucket_end, created_at, updated_at)
    SELECT %(slug)s, next.generation, %(description)s, %(auto_percent)s, %(exclusion_group)s,
           placed.bucket_start, placed.bucket_start + placed.width, %(now)s, %(now)s
    FROM next, placed
    WHERE placed.width IS NULL OR placed.bucket_start IS NOT NULL
    RETURNING *
), rule AS (
    INSERT INTO segment_rule_change (slug, generation, changed_at, bucket_start, bucket_end)
    SELECT slug, generation, created_at, bucket_start, bucket_end FROM created
    WHERE bucket_start IS NOT NULL
)
SELECT slug, generation, description, auto_percent, exclusion_group, bucket_start, bucket_end,
       created_at, updated_at
FROM created;

-- name: largest_free_gap
-- The widest free range of a group in units, for the 409's free_percent (units / 100).
SELECT segments_largest_free_gap(array_agg(int4range(bucket_start, bucket_end))) AS free_units
FROM segment
WHERE exclusion_group = %(exclusion_group)s AND deleted_at IS NULL
  AND (%(except_slug)s::text IS NULL OR slug <> %(except_slug)s);

-- name: list_segments
-- Keyset pagination in byte order. Asks for one row more than the page: if it comes back,
-- the page's last slug is the next cursor. %(after)s is NULL on the first page.
SELECT slug, generation, description, auto_percent, exclusion_group, bucket_start, bucket_end,
       created_at, updated_at
FROM segment
WHERE deleted_at IS NULL AND (%(after)s::text IS NULL OR slug > %(after)s::text)
ORDER BY slug
LIMIT %(limit)s::integer + 1;

-- name: get_segment
SELECT slug, generation, description, auto_percent, exclusion_group, bucket_start, bucket_end,
       created_at, updated_at
FROM segment
WHERE slug = %(slug)s AND deleted_at IS NULL;

-- name: patch_segment
-- Changes what the set_* flags say. Raising grows the range upward, lowering trims its top,
-- NULL ends the rule (not allowed in a group: segment_group_needs_percent). No row back: no
-- live segment (404, check with get_segment first) or the raise does not fit (409).
WITH current AS (
    SELECT * FROM segment WHERE slug = %(slug)s AND deleted_at IS NULL FOR UPDATE
), wanted AS (
    SELECT c.slug, c.generation, c.exclusion_group, c.bucket_start, c.bucket_end,
           CASE WHEN %(set_auto_percent)s THEN %(auto_percent)s::numeric(5, 2)
                ELSE c.auto_percent END AS auto_percent
    FROM current c
), placed AS (
    SELECT w.slug, w.generation, w.auto_percent, (w.auto_percent * 100)::integer AS width,
           CASE
               WHEN w.auto_percent IS NULL THEN NULL
               WHEN w.exclusion_group IS NULL THEN 0
               ELSE segments_resized_start(
                   w.bucket_start, w.bucket_end, (w.auto_percent * 100)::integer,
                   (SELECT array_agg(int4range(o.bucket_start, o.bucket_end)) FROM segment o
                    WHERE o.exclusion_group = w.exclusion_group AND o.deleted_at IS NULL
                      AND o.slug <> w.slug))
           END AS bucket_start
    FROM wanted w
), changed AS (
    UPDATE segment s
    SET description = CASE WHEN %(set_description)s THEN %(description)s::text ELSE s.description END,
        auto_percent = p.auto_percent,
        bucket_start = p.bucket_start,
        bucket_end = p.bucket_start + p.width,
        updated_at = %(now)s
    FROM placed p
    WHERE s.slug = p.slug AND s.generation = p.generation
      AND (p.auto_percent IS NULL OR p.bucket_start IS NOT NULL)
    RETURNING s.*
), rule AS (
    INSERT INTO segment_rule_change (slug, generation, changed_at, bucket_start, bucket_end)
    SELECT changed.slug, changed.generation, changed.updated_at, changed.bucket_start, changed.bucket_end
    FROM changed JOIN current USING (slug, generation)
    WHERE (changed.bucket_start, changed.bucket_end) IS DISTINCT FROM (current.bucket_start, current.bucket_end)
)
SELECT slug, generation, description, auto_percent, exclusion_group, bucket_start, bucket_end,
       created_at, updated_at
FROM changed;

-- name: delete_segment
-- Marks the live generation deleted (its range is free at once) and removes its members, each
-- with one history row: segment_deleted now, or ttl_expired at the expiry if it was already due.
-- Its running imports end failed ("segment deleted").
-- No row back: no live segment (404).
WITH gone AS (
    UPDATE segment SET deleted_at = %(now)s, updated_at = %(now)s
    WHERE slug = %(slug)s AND deleted_at IS NULL
    RETURNING slug, generation, bucket_start
), rule AS (
    INSERT INTO segment_rule_change (slug, generation, changed_at, bucket_start, bucket_end)
    SELECT slug, generation, %(now)s, NULL, NULL FROM gone WHERE bucket_start IS NOT NULL
), members AS (
    DELETE FROM membership m USING gone
    WHERE m.slug = gone.slug AND m.generation = gone.generation
    RETURNING m.user_id, m.slug, m.generation, m.state, m.expires_at
), failed_imports AS (
    -- A running import of the generation ends failed; what it wrote goes with the members above.
    UPDATE segment_import i SET status = 'failed', failure = 'segment deleted', finished_at = %(now)s
    FROM gone WHERE i.slug = gone.slug AND i.generation = gone.generation AND i.status = 'running'
), removals AS (
    INSERT INTO history (user_id, slug, generation, operation, reason, at)
    SELECT user_id, slug, generation, 'remove',
           CASE WHEN expires_at <= %(now)s THEN 'ttl_expired' ELSE 'segment_deleted' END,
           CASE WHEN expires_at <= %(now)s THEN expires_at ELSE %(now)s END
    FROM members
    WHERE state = 'member'
      AND NOT (expires_at <= %(now)s AND segments_rule_holds(slug, generation, user_id, expires_at))
    RETURNING 1
)
SELECT slug, generation, (SELECT count(*) FROM removals) AS removed_members FROM gone;

-- name: missing_segments
-- The named slugs without a live segment (404 "missing" when any); the live ones stay locked
-- until commit, so none is deleted under the change.
WITH live AS (
    SELECT slug FROM segment
    WHERE slug = ANY(%(slugs)s::text[]) AND deleted_at IS NULL
    FOR SHARE
)
SELECT named.slug
FROM unnest(%(slugs)s::text[]) AS named(slug)
WHERE named.slug NOT IN (SELECT slug FROM live)
ORDER BY named.slug COLLATE "C";

-- name: expire_memberships
-- Expired memberships leave with a ttl_expired row at their expiry: the twin of DynamoDB's TTL
-- deletion and the stream. One the bucket still held at its expiry is no change: no row.
-- %(user_id)s NULL sweeps everyone.
WITH expired AS (
    DELETE FROM membership
    WHERE state = 'member' AND expires_at <= %(now)s
      AND (%(user_id)s::bigint IS NULL OR user_id = %(user_id)s::bigint)
    RETURNING user_id, slug, generation, expires_at
)
INSERT INTO history (user_id, slug, generation, operation, reason, at)
SELECT user_id, slug, generation, 'remove', 'ttl_expired', expires_at FROM expired
WHERE NOT segments_rule_holds(slug, generation, user_id, expires_at)
RETURNING user_id, slug, at;

-- name: add_user_segment
-- An explicit membership, whatever the bucket says. Already a member: keeps added_at, takes the
-- new expiry (NULL: permanent). Outcome 'added' writes a manual add; 'unchanged' (already in,
-- by membership or by bucket) writes nothing. No row back: no live segment.
WITH seg AS (
    SELECT slug, generation, bucket_start, bucket_end,
           segments_bucket(coalesce(exclusion_group, slug), %(user_id)s::bigint) AS bucket
    FROM segment WHERE slug = %(slug)s AND deleted_at IS NULL
), prev AS (
    SELECT m.state, m.expires_at FROM membership m JOIN seg USING (slug, generation)
    WHERE m.user_id = %(user_id)s::bigint
), before AS (
    SELECT EXISTS (SELECT 1 FROM prev WHERE state = 'member'
                   AND (expires_at IS NULL OR expires_at > %(now)s))
        OR (NOT EXISTS (SELECT 1 FROM prev WHERE state = 'opted_out')
            AND EXISTS (SELECT 1 FROM seg WHERE bucket >= bucket_start AND bucket < bucket_end))
        AS was_in
), stored AS (
    INSERT INTO membership AS m (user_id, slug, generation, state, added_at, expires_at)
    SELECT %(user_id)s::bigint, slug, generation, 'member', %(now)s, %(expires_at)s FROM seg
    ON CONFLICT (user_id, slug, generation) DO UPDATE
    SET added_at = CASE WHEN m.state = 'member' AND (m.expires_at IS NULL OR m.expires_at > excluded.added_at)
                        THEN m.added_at ELSE excluded.added_at END,
        state = 'member',
        expires_at = excluded.expires_at
    RETURNING slug, generation
), addition AS (
    INSERT INTO history (user_id, slug, generation, operation, reason, at)
    SELECT %(user_id)s::bigint, slug, generation, 'add', 'manual', %(now)s
    FROM stored, before WHERE NOT before.was_in
)
SELECT stored.slug, CASE WHEN before.was_in THEN 'unchanged' ELSE 'added' END AS outcome
FROM stored, before;

-- name: remove_user_segment
-- A manual segment: the membership goes. A percentage segment: an opt-out is stored, so the
-- bucket and later ramps cannot bring the user back (a later add does). Outcome 'removed'
-- (the user was in) writes a manual remove; 'unchanged' writes nothing. No row: no live segment.
WITH seg AS (
    SELECT slug, generation, bucket_start, bucket_end,
           segments_bucket(coalesce(exclusion_group, slug), %(user_id)s::bigint) AS bucket
    FROM segment WHERE slug = %(slug)s AND deleted_at IS NULL
), prev AS (
    SELECT m.state, m.expires_at FROM membership m JOIN seg USING (slug, generation)
    WHERE m.user_id = %(user_id)s::bigint
), before AS (
    SELECT EXISTS (SELECT 1 FROM prev WHERE state = 'member'
                   AND (expires_at IS NULL OR expires_at > %(now)s))
        OR (NOT EXISTS (SELECT 1 FROM prev WHERE state = 'opted_out')
            AND EXISTS (SELECT 1 FROM seg WHERE bucket >= bucket_start AND bucket < bucket_end))
        AS was_in
), dropped AS (
    DELETE FROM membership m USING seg
    WHERE seg.bucket_start IS NULL
      AND m.user_id = %(user_id)s::bigint AND m.slug = seg.slug AND m.generation = seg.generation
), opted_out AS (
    INSERT INTO membership AS m (user_id, slug, generation, state, added_at, expires_at)
    SELECT %(user_id)s::bigint, slug, generation, 'opted_out', %(now)s, NULL FROM seg
    WHERE seg.bucket_start IS NOT NULL
    ON CONFLICT (user_id, slug, generation) DO UPDATE
    SET state = 'opted_out', expires_at = NULL,
        added_at = CASE WHEN m.state = 'opted_out' THEN m.added_at ELSE excluded.added_at END
), removal AS (
    INSERT INTO history (user_id, slug, generation, operation, reason, at)
    SELECT %(user_id)s::bigint, slug, generation, 'remove', 'manual', %(now)s
    FROM seg, before WHERE before.was_in
)
SELECT seg.slug, CASE WHEN before.was_in THEN 'removed' ELSE 'unchanged' END AS outcome
FROM seg, before;

-- name: active_segments
-- GET /users/{user_id}/segments: explicit memberships not expired, then every live percentage
-- segment whose range holds the user's bucket (seed: the group, else the slug) unless the user
-- opted out or already holds it explicitly. Nothing is stored per user for the second part.
SELECT s.slug, 'manual' AS source, m.added_at, m.expires_at
FROM membership m
JOIN segment s ON s.slug = m.slug AND s.generation = m.generation AND s.deleted_at IS NULL
WHERE m.user_id = %(user_id)s::bigint AND m.state = 'member'
  AND (m.expires_at IS NULL OR m.expires_at > %(now)s)
UNION ALL
SELECT s.slug, 'auto', NULL, NULL
FROM segment s
CROSS JOIN LATERAL (
    SELECT segments_bucket(coalesce(s.exclusion_group, s.slug), %(user_id)s::bigint) AS bucket
) AS b
WHERE s.deleted_at IS NULL AND s.auto_percent IS NOT NULL
  AND b.bucket >= s.bucket_start AND b.bucket < s.bucket_end
  AND NOT EXISTS (
      SELECT 1 FROM membership m
      WHERE m.user_id = %(user_id)s::bigint AND m.slug = s.slug AND m.generation = s.generation
        AND (m.state = 'opted_out' OR m.expires_at IS NULL OR m.expires_at > %(now)s))
ORDER BY slug;  -- slugs collate "C": byte order

-- name: expired_membership_history
-- Expiries that are due but not swept yet (DynamoDB deletes expired items late): a report
-- shows them at their expiry, once, because the sweep moves them to history in one statement
-- (and, like the sweep, not those the bucket still held then).
SELECT m.user_id, m.slug AS segment, 'remove' AS operation, m.expires_at AS at, 'ttl_expired' AS reason
FROM membership m
WHERE m.state = 'member' AND m.expires_at <= %(now)s
  AND m.expires_at >= %(period_start)s AND m.expires_at < %(period_end)s
  AND (%(user_id)s::bigint IS NULL OR m.user_id = %(user_id)s::bigint)
  AND NOT segments_rule_holds(m.slug, m.generation, m.user_id, m.expires_at)
ORDER BY m.expires_at, m.user_id, m.slug;

-- name: history_report_for_user
-- GET /reports/history?period=YYYY-MM&user_id=N: [period_start, period_end) in UTC, in report
-- order (time, user, slug, then the order the changes took effect).
SELECT user_id, segment, operation, at, reason FROM (
    SELECT h.user_id, h.slug AS segment, h.operation, h.at, h.reason, h.history_id AS seq
    FROM history h
    WHERE h.user_id = %(user_id)s::bigint AND h.at >= %(period_start)s AND h.at < %(period_end)s
    UNION ALL
    SELECT m.user_id, m.slug, 'remove', m.expires_at, 'ttl_expired', NULL
    FROM membership m
    WHERE m.user_id = %(user_id)s::bigint AND m.state = 'member' AND m.expires_at <= %(now)s
      AND m.expires_at >= %(period_start)s AND m.expires_at < %(period_end)s
      AND NOT segments_rule_holds(m.slug, m.generation, m.user_id, m.expires_at)
) AS changes
ORDER BY at, user_id, segment COLLATE "C", seq NULLS LAST;

-- name: history_report_all_users
-- GET /reports/history?period=YYYY-MM and the monthly job: the same rows for every user.
SELECT user_id, segment, operation, at, reason FROM (
    SELECT h.user_id, h.slug AS segment, h.operation, h.at, h.reason, h.history_id AS seq
    FROM history h
    WHERE h.at >= %(period_start)s AND h.at < %(period_end)s
    UNION ALL
    SELECT m.user_id, m.slug, 'remove', m.expires_at, 'ttl_expired', NULL
    FROM membership m
    WHERE m.state = 'member' AND m.expires_at <= %(now)s
      AND m.expires_at >= %(period_start)s AND m.expires_at < %(period_end)s
      AND NOT segments_rule_holds(m.slug, m.generation, m.user_id, m.expires_at)
) AS changes
ORDER BY at, user_id, segment COLLATE "C", seq NULLS LAST;

-- name: segment_rule_changes
-- The ranges percentage segments held over time, the input for a user's `auto` history rows:
-- a user entered when a change's range holds their bucket and the previous one did not.
SELECT r.slug, r.generation, coalesce(s.exclusion_group, s.slug) AS seed,
       r.changed_at, r.bucket_start, r.bucket_end
FROM segment_rule_change r
JOIN segment s ON s.slug = r.slug AND s.generation = r.generation
WHERE r.changed_at < %(period_end)s
ORDER BY r.slug, r.generation, r.changed_at, r.change_id;

-- name: member_counts
-- `members` of GET /segments/{slug}, a list page and a PATCH answer: per named live segment, its
-- generation's stored explicit memberships (silent ones included: an add of a user the bucket held
-- already) and opt-outs. Users in only by their bucket are not counted; nor is a membership whose
-- expiry passed (the service's count drops it when its sweeper ends it, within a minute).
SELECT s.slug,
       count(m.user_id) FILTER (WHERE m.state = 'member'
                                AND (m.expires_at IS NULL OR m.expires_at > %(now)s)) AS explicit,
       count(m.user_id) FILTER (WHERE m.state = 'opted_out') AS opted_out
FROM segment s
LEFT JOIN membership m ON m.slug = s.slug AND m.generation = s.generation
WHERE s.slug = ANY(%(slugs)s::text[]) AND s.deleted_at IS NULL
GROUP BY s.slug
ORDER BY s.slug;

-- name: create_import
-- POST /segments/{slug}/imports: an import of the slug's live generation, awaiting its upload until
-- %(upload_expires_at)s (the presigned link's end). The body's rules (mode, at most one expiry and
-- only with add, ten years at most) are the table's constraints; an expires_at not in the future is
-- a 400 before this. No row back: no live segment (404).
WITH live AS (
    SELECT slug, generation FROM segment
    WHERE slug = %(slug)s AND deleted_at IS NULL
    FOR SHARE  -- not deleted under the insert
)
INSERT INTO segment_import (import_id, slug, generation, mode, ttl_seconds, expires_at, status,
                            created_at, upload_expires_at)
SELECT %(import_id)s, slug, generation, %(mode)s, %(ttl_seconds)s::integer, %(expires_at)s::timestamptz,
       'awaiting_upload', %(now)s, %(upload_expires_at)s
FROM live
RETURNING import_id, slug AS segment, generation, mode, ttl_seconds, expires_at, status, lines, applied,
          unchanged, rejected, failure, created_at, upload_expires_at, started_at, finished_at;

-- name: start_import
-- The upload arrived (its S3 event) with %(lines)s data lines in %(bytes)s bytes: the import runs,
-- or ends failed at once when it cannot (the checks in the service's order). Only the first upload
-- of an import awaiting it starts it: a later one, or one after the import ended, is no row back.
WITH job AS (
    SELECT i.import_id, CASE
        WHEN s.deleted_at IS NOT NULL THEN 'segment deleted'
        WHEN %(bytes)s::bigint > 268435456 THEN 'the file is larger than 256 MiB'
        WHEN i.expires_at <= %(now)s THEN 'expires_at passed before the import could apply it'
        WHEN %(lines)s::integer > 10000000 THEN 'the file has more than 10,000,000 lines'
    END AS failure
    FROM segment_import i
    JOIN segment s ON s.slug = i.slug AND s.generation = i.generation
    WHERE i.import_id = %(import_id)s AND i.status = 'awaiting_upload'
    FOR UPDATE OF i
)
UPDATE segment_import i
SET status = CASE WHEN job.failure IS NULL THEN 'running' ELSE 'failed' END,
    failure = job.failure,
    lines = CASE WHEN job.failure IS NULL THEN %(lines)s::integer ELSE 0 END,
    started_at = %(now)s,
    finished_at = CASE WHEN job.failure IS NULL THEN NULL ELSE %(now)s::timestamptz END
FROM job
WHERE i.import_id = job.import_id
RETURNING i.import_id, i.status, i.lines, i.failure;

-- name: import_line_error
-- Why a data line is not a user id, in the errors CSV's words; NULL: it is one.
SELECT segments_user_id_error(%(value)s) AS error;

-- name: reject_import_line
-- A bad line of a running import: kept once with its text and error, and counted rejected; a line
-- kept before (a retry) is `again` and counts nothing. No row back: the import is not running.
WITH job AS (
    SELECT import_id FROM segment_import WHERE import_id = %(import_id)s AND status = 'running'
), kept AS (
    INSERT INTO import_line (import_id, line, value, error, outcome)
    SELECT import_id, %(line)s, %(value)s, %(error)s, 'rejected' FROM job
    ON CONFLICT (import_id, line) DO NOTHING
    RETURNING import_id
), counted AS (
    UPDATE segment_import i SET rejected = i.rejected + 1
    FROM kept
    WHERE i.import_id = kept.import_id
)
SELECT 'rejected' AS outcome, NOT EXISTS (SELECT 1 FROM kept) AS again FROM job;

-- name: apply_import_line
-- A good line of a running import, after lock_user and expire_memberships for its user in the same
-- transaction: the user changed as add_user_segment or remove_user_segment would (by the import's
-- mode: manual wins, added_at kept, the expiry becomes the import's, a remove of a percentage segment
-- stores an opt-out), with reason `import`. The expiry: ttl_seconds from now, or the import's
-- expires_at. `outcome`: 'applied' (the user's membership changed: one history row), 'unchanged'
-- (in that state already; an add still stores the membership and its expiry) or 'duplicate' (another
-- line decided the user: nothing written, counted unchanged). A line applied before returns its
-- outcome with `again` and changes nothing. No outcome: the import is not running, or `stop` says
-- why it cannot go on (fail_import ends it). No row back: no such import.
WITH job AS (
    SELECT i.import_id, i.slug, i.generation, i.mode, i.status, s.bucket_start, s.bucket_end,
           segments_bucket(coalesce(s.exclusion_group, s.slug), %(user_id)s::bigint) AS bucket,
           CASE WHEN i.ttl_seconds IS NOT NULL
                THEN %(now)s::timestamptz + make_interval(secs => i.ttl_seconds)
                ELSE i.expires_at END AS expires_at,
           CASE WHEN s.deleted_at IS NOT NULL THEN 'segment deleted'
                WHEN i.expires_at <= %(now)s THEN 'expires_at passed before the import could apply it'
           END AS stop
    FROM segment_import i
    JOIN segment s ON s.slug = i.slug AND s.generation = i.generation
    WHERE i.import_id = %(import_id)s
    FOR SHARE OF s  -- a deletion waits for this line, so its clean-up sees what the line wrote
), seen AS (
    SELECT (SELECT outcome FROM import_line
            WHERE import_id = %(import_id)s AND line = %(line)s) AS earlier,
           EXISTS (SELECT 1 FROM import_line
                   WHERE import_id = %(import_id)s AND user_id = %(user_id)s::bigint
                     AND outcome IN ('applied', 'unchanged')) AS decided
), prev AS (
    SELECT m.state, m.expires_at FROM membership m JOIN job USING (slug, generation)
    WHERE m.user_id = %(user_id)s::bigint
), before AS (
    SELECT EXISTS (SELECT 1 FROM prev WHERE state = 'member'
                   AND (expires_at IS NULL OR expires_at > %(now)s))
        OR (NOT EXISTS (SELECT 1 FROM prev WHERE state = 'opted_out')
            AND EXISTS (SELECT 1 FROM job WHERE bucket >= bucket_start AND bucket < bucket_end))
        AS was_in
), decision AS (
    SELECT job.import_id, job.slug, job.generation, job.mode, job.bucket_start, job.expires_at,
           CASE WHEN seen.decided THEN 'duplicate'
                WHEN (job.mode = 'add') <> before.was_in THEN 'applied'
                ELSE 'unchanged' END AS outcome
    FROM job, seen, before
    WHERE job.status = 'running' AND job.stop IS NULL AND seen.earlier IS NULL
), writes AS (
    SELECT * FROM decision WHERE outcome <> 'duplicate'
), added AS (
    INSERT INTO membership AS m (user_id, slug, generation, state, added_at, expires_at)
    SELECT %(user_id)s::bigint, slug, generation, 'member', %(now)s, expires_at FROM writes
    WHERE mode = 'add'
    ON CONFLICT (user_id, slug, generation) DO UPDATE
    SET added_at = CASE WHEN m.state = 'member' AND (m.expires_at IS NULL OR m.expires_at > excluded.added_at)
                        THEN m.added_at ELSE excluded.added_at END,
        state = 'member',
        expires_at = excluded.expires_at
), dropped AS (
    DELETE FROM membership m USING writes w
    WHERE w.mode = 'remove' AND w.bucket_start IS NULL
      AND m.user_id = %(user_id)s::bigint AND m.slug = w.slug AND m.generation = w.generation
), opted_out AS (
    INSERT INTO membership AS m (user_id, slug, generation, state, added_at, expires_at)
    SELECT %(user_id)s::bigint, slug, generation, 'opted_out', %(now)s, NULL FROM writes
    WHERE mode = 'remove' AND bucket_start IS NOT NULL
    ON CONFLICT (user_id, slug, generation) DO UPDATE
    SET state = 'opted_out', expires_at = NULL,
        added_at = CASE WHEN m.state = 'opted_out' THEN m.added_at ELSE excluded.added_at END
), logged AS (
    INSERT INTO history (user_id, slug, generation, operation, reason, at)
    SELECT %(user_id)s::bigint, slug, generation, CASE WHEN mode = 'add' THEN 'add' ELSE 'remove' END,
           'import', %(now)s
    FROM decision WHERE outcome = 'applied'
), recorded AS (
    INSERT INTO import_line (import_id, line, user_id, outcome)
    SELECT import_id, %(line)s, %(user_id)s::bigint, outcome FROM decision
    RETURNING import_id, outcome
), counted AS (
    UPDATE segment_import i
    SET applied = i.applied + (r.outcome = 'applied')::integer,
        unchanged = i.unchanged + (r.outcome <> 'applied')::integer
    FROM recorded r
    WHERE i.import_id = r.import_id
)
SELECT coalesce(seen.earlier, decision.outcome) AS outcome, seen.earlier IS NOT NULL AS again,
       CASE WHEN job.status = 'running' AND seen.earlier IS NULL THEN job.stop END AS stop
FROM job CROSS JOIN seen LEFT JOIN decision ON true;

-- name: fail_import
-- A running import stops with why (apply_import_line's `stop`); what it wrote stays.
UPDATE segment_import SET status = 'failed', failure = %(failure)s, finished_at = %(now)s
WHERE import_id = %(import_id)s AND status = 'running'
RETURNING import_id, status, failure;

-- name: finish_import
-- A running import whose every data line has its outcome is done. No row back: lines are still
-- missing, or it is not running.
UPDATE segment_import SET status = 'done', finished_at = %(now)s
WHERE import_id = %(import_id)s AND status = 'running' AND applied + unchanged + rejected = lines
RETURNING import_id, status, lines, applied, unchanged, rejected;

-- name: expire_imports
-- The sweep: an import whose upload link expired unused ends `expired`. It waits 5 minutes past the
-- link's end, as the service does, for an upload begun just before it.
UPDATE segment_import SET status = 'expired', finished_at = %(now)s
WHERE status = 'awaiting_upload' AND upload_expires_at + interval '5 minutes' <= %(now)s
RETURNING import_id, slug AS segment;

-- name: get_import
-- GET /segments/{slug}/imports/{import_id}: an import of the slug's live generation (an import of
-- a deleted generation is 404, as the slug without a live segment is; see get_segment).
SELECT i.import_id, i.slug AS segment, i.mode, i.ttl_seconds, i.expires_at, i.status, i.lines,
       i.applied, i.unchanged, i.rejected, i.failure, i.created_at, i.upload_expires_at, i.started_at,
       i.finished_at
FROM segment_import i
JOIN segment s ON s.slug = i.slug AND s.generation = i.generation AND s.deleted_at IS NULL
WHERE i.slug = %(slug)s AND i.import_id = %(import_id)s;

-- name: list_imports
-- GET /segments/{slug}/imports: the live generation's imports, newest first (import ids sort by
-- creation), one row more than the page as in list_segments. %(before)s: the cursor, NULL at first.
SELECT i.import_id, i.slug AS segment, i.mode, i.ttl_seconds, i.expires_at, i.status, i.lines,
       i.applied, i.unchanged, i.rejected, i.failure, i.created_at, i.upload_expires_at, i.started_at,
       i.finished_at
FROM segment_import i
JOIN segment s ON s.slug = i.slug AND s.generation = i.generation AND s.deleted_at IS NULL
WHERE i.slug = %(slug)s AND (%(before)s::text IS NULL OR i.import_id < %(before)s::text)
ORDER BY i.import_id DESC
LIMIT %(limit)s::integer + 1;

-- name: import_errors
-- The errors CSV (`line;value;error`) of an import: every rejected line in line order, its value
-- cut to 64 characters as the service shows it (the CSV's quoting and formula guard are the writer's).
SELECT line, CASE WHEN char_length(value) > 64 THEN left(value, 64) || '…' ELSE value END AS value, error
FROM import_line
WHERE import_id = %(import_id)s AND outcome = 'rejected'
ORDER BY line;
