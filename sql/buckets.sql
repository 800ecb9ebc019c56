-- Buckets of percentage segments, exactly as functions/logic/buckets.py computes them,
-- so analysts can recompute membership in SQL: start <= segments_bucket(seed, user_id) < end,
-- where seed is the exclusion group's name, or the slug when the segment has no group.
-- It is GrowthBook's hash version 2: segments_bucket(seed, u) = gbhash(seed, u::text, 2) * 10000.
-- FNV-1a runs on bigint: the state stays below 2^32 and the prime below 2^25, so no step overflows.

CREATE OR REPLACE FUNCTION segments_fnv1a32(input text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    hval bigint := 2166136261;
BEGIN
    -- One step per character (code point), as GrowthBook's SDKs do; slugs and ids are ASCII.
    FOR i IN 1..length(input) LOOP
        hval := ((hval # ascii(substr(input, i, 1))) * 16777619) & 4294967295;
    END LOOP;
    RETURN hval;
END;
$$;

CREATE OR REPLACE FUNCTION segments_gbhash_v2(seed text, value text) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (mod(segments_fnv1a32(segments_fnv1a32(seed || value)::text), 10000) / 10000.0)::numeric(5, 4)
$$;

CREATE OR REPLACE FUNCTION segments_bucket(seed text, user_id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT mod(segments_fnv1a32(segments_fnv1a32(seed || user_id::text)::text), 10000)::integer
$$;

-- Bucket ranges of an exclusion group, as logic/buckets.py allocates them. `taken` holds
-- the ranges of the group's other live segments, int4range(bucket_start, bucket_end); empty
-- ranges hold nobody and take no room. Widths and starts are bucket units in [0, 10000].

-- The non-empty free ranges of [0, 10000) around `taken`, lowest first.
CREATE OR REPLACE FUNCTION segments_free_gaps(taken int4range[])
RETURNS TABLE (gap_start integer, gap_end integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH occupied AS (
        SELECT lower(r) AS range_start, upper(r) AS range_end
        FROM unnest(coalesce(taken, '{}'::int4range[])) AS r
        WHERE NOT isempty(r)
    ), edges AS (
        -- A gap runs from the highest end below a range to that range's start.
        SELECT coalesce(max(range_end) OVER (ORDER BY range_start, range_end
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS gap_start,
               range_start AS gap_end
        FROM occupied
        UNION ALL
        SELECT coalesce(max(range_end), 0), 10000 FROM occupied
    )
    SELECT gap_start, gap_end FROM edges WHERE gap_end > gap_start ORDER BY gap_start
$$;

-- Where a new segment of `width` units starts: the lowest free gap that fits, NULL when none
-- does. Width 0 is the empty range at the lowest gap's start, or at 0 when the group is full.
CREATE OR REPLACE FUNCTION segments_lowest_fitting_start(taken int4range[], width integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN width = 0 THEN coalesce((SELECT min(gap_start) FROM segments_free_gaps(taken)), 0)
        ELSE (SELECT min(gap_start) FROM segments_free_gaps(taken) WHERE gap_end - gap_start >= width)
    END
$$;

-- The widest free range in units, 0 when the group is full: the 409's free_percent * 100.
CREATE OR REPLACE FUNCTION segments_largest_free_gap(taken int4range[])
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(max(gap_end - gap_start), 0) FROM segments_free_gaps(taken)
$$;

-- Where [current_start, current_end) starts after a change to `new_width` units, NULL when it
-- does not fit: lowering trims the top, raising grows into free space directly above, and an
-- empty range (it holds nobody) moves to the lowest fitting gap as a new segment would.
CREATE OR REPLACE FUNCTION segments_resized_start(
    current_start integer, current_end integer, new_width integer, taken int4range[]
) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN current_start = current_end THEN
            CASE WHEN new_width = 0 THEN current_start
                 ELSE segments_lowest_fitting_start(taken, new_width) END
        WHEN new_width <= current_end - current_start THEN current_start
        WHEN current_start + new_width > 10000 THEN NULL
        WHEN EXISTS (SELECT 1 FROM unnest(coalesce(taken, '{}'::int4range[])) AS r
                     WHERE r && int4range(current_end, current_start + new_width)) THEN NULL
        ELSE current_start
    END
$$;

-- Whether the range a segment generation held at `at` holds the user's bucket. An explicit
-- membership that expires while it does leaves the user where they were: no history row.
CREATE OR REPLACE FUNCTION segments_rule_holds(
    rule_slug text, rule_generation integer, rule_user_id bigint, at timestamptz
) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT b.bucket >= r.bucket_start AND b.bucket < r.bucket_end
        FROM segment_rule_change r
        JOIN segment s ON s.slug = r.slug AND s.generation = r.generation
        CROSS JOIN LATERAL (
            SELECT segments_bucket(coalesce(s.exclusion_group, s.slug), rule_user_id) AS bucket
        ) AS b
        WHERE r.slug = rule_slug AND r.generation = rule_generation AND r.changed_at <= at
        ORDER BY r.changed_at DESC, r.change_id DESC
        LIMIT 1
    ), false)
$$;
