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
