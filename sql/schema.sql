-- segments: the relational twin of what the service stores in DynamoDB.
--
-- It documents the data model with keys and constraints a database enforces, and it is
-- tested (tests/sql/test_sql_schema.py): apply this file, then sql/buckets.sql, then run
-- the named statements of sql/queries.sql. PostgreSQL 15 or later.
--
-- Units: auto_percent is the percentage the API shows (numeric(5,2), 0 to 100); a
-- percentage segment holds the half-open bucket range [bucket_start, bucket_end) in bucket
-- units (hundredths of a percent, 0 to 10000), so bucket_end - bucket_start = auto_percent * 100.
-- Slugs compare in byte order (COLLATE "C"), as the API sorts them.

CREATE EXTENSION IF NOT EXISTS btree_gist;  -- text equality inside the exclusion constraint

CREATE DOMAIN segments_slug AS text COLLATE "C"
    CHECK (VALUE ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$');

-- One row per generation: a slug deleted and created again is a new generation that starts
-- with no members, so nothing of the old one (memberships, history) can leak into it.
CREATE TABLE segment (
    slug            segments_slug NOT NULL,
    generation      integer NOT NULL CHECK (generation > 0),
    description     text NOT NULL DEFAULT '' CHECK (char_length(description) <= 1000),
    auto_percent    numeric(5, 2) CHECK (auto_percent BETWEEN 0 AND 100),
    exclusion_group segments_slug,
    bucket_start    integer,
    bucket_end      integer,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,  -- NULL while the generation is live
    PRIMARY KEY (slug, generation),
    CONSTRAINT segment_group_needs_percent CHECK (exclusion_group IS NULL OR auto_percent IS NOT NULL),
    CONSTRAINT segment_range_iff_percent CHECK (
        (auto_percent IS NULL AND bucket_start IS NULL AND bucket_end IS NULL)
        OR (auto_percent IS NOT NULL AND bucket_start IS NOT NULL AND bucket_end IS NOT NULL)
    ),
    CONSTRAINT segment_range_inside_buckets CHECK (0 <= bucket_start AND bucket_end <= 10000),
    CONSTRAINT segment_range_is_the_percent CHECK (bucket_end - bucket_start = auto_percent * 100),
    -- Without a group the seed is the slug and the range is [0, p): ramps grow and trim the top.
    CONSTRAINT segment_ungrouped_starts_at_zero CHECK (exclusion_group IS NOT NULL OR bucket_start = 0),
    CONSTRAINT segment_times_in_order CHECK (created_at <= updated_at AND (deleted_at IS NULL OR created_at <= deleted_at)),
    -- Live segments of one group hold disjoint ranges of the group's buckets; deleting frees the range.
    CONSTRAINT segment_group_ranges_disjoint EXCLUDE USING gist (
        exclusion_group WITH =,
        int4range(bucket_start, bucket_end) WITH &&
    ) WHERE (deleted_at IS NULL AND exclusion_group IS NOT NULL)
);

-- At most one live generation per slug; also the index behind GET /segments (keyset by slug).
CREATE UNIQUE INDEX segment_live_slug ON segment (slug) WHERE deleted_at IS NULL;
-- The live percentage segments: the catalog a read evaluates for every user.
CREATE INDEX segment_live_percentage ON segment (slug) WHERE deleted_at IS NULL AND auto_percent IS NOT NULL;

-- Every range a generation held and when it started to hold it (NULL range: the rule ended or
-- the segment was deleted). Enough to derive a user's `auto` history without a row per user.
CREATE TABLE segment_rule_change (
    change_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug         segments_slug NOT NULL,
    generation   integer NOT NULL,
    changed_at   timestamptz NOT NULL,
    bucket_start integer,
    bucket_end   integer,
    FOREIGN KEY (slug, generation) REFERENCES segment (slug, generation),
    CHECK ((bucket_start IS NULL) = (bucket_end IS NULL)),
    CHECK (0 <= bucket_start AND bucket_start <= bucket_end AND bucket_end <= 10000)
);
CREATE INDEX segment_rule_change_by_segment ON segment_rule_change (slug, generation, changed_at, change_id);

-- The one stored row per (user, segment generation): an explicit membership, or an opt-out of
-- a percentage segment (an explicit remove, which wins over the bucket and later ramps).
CREATE TABLE membership (
    user_id    bigint NOT NULL CHECK (user_id > 0),
    slug       segments_slug NOT NULL,
    generation integer NOT NULL,
    state      text NOT NULL CHECK (state IN ('member', 'opted_out')),
    added_at   timestamptz NOT NULL,  -- for an opt-out: when it was stored
    expires_at timestamptz,           -- NULL: permanent
    PRIMARY KEY (user_id, slug, generation),  -- a user's segments
    FOREIGN KEY (slug, generation) REFERENCES segment (slug, generation),
    CHECK (expires_at IS NULL OR expires_at > added_at),
    CHECK (state = 'member' OR expires_at IS NULL)
);
-- Members of a segment (delete clean-up); expiries due (the TTL sweep).
CREATE INDEX membership_by_segment ON membership (slug, generation, user_id);
CREATE INDEX membership_by_expiry ON membership (expires_at) WHERE expires_at IS NOT NULL;

-- Every membership change that took effect, once. history_id keeps the order in which two
-- changes of one user's segment took effect when their timestamps are equal.
CREATE TABLE history (
    history_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL CHECK (user_id > 0),
    slug       segments_slug NOT NULL,
    generation integer NOT NULL,
    operation  text NOT NULL CHECK (operation IN ('add', 'remove')),
    reason     text NOT NULL CHECK (reason IN ('manual', 'import', 'auto', 'ttl_expired', 'segment_deleted')),
    at         timestamptz NOT NULL,
    FOREIGN KEY (slug, generation) REFERENCES segment (slug, generation),
    CHECK (operation = 'remove' OR reason IN ('manual', 'import', 'auto'))
);
-- A report for one user's month, and the month of all users, each read in report order.
CREATE INDEX history_by_user_month ON history (user_id, at, slug, history_id);
CREATE INDEX history_by_month ON history (at, user_id, slug, history_id);
-- Removals by deletion and by expiry happen once per membership, however often they are retried.
CREATE UNIQUE INDEX history_deleted_once ON history (user_id, slug, generation)
    WHERE reason = 'segment_deleted';
CREATE UNIQUE INDEX history_expired_once ON history (user_id, slug, generation, at)
    WHERE reason = 'ttl_expired';

-- Bulk changes (POST /segments/{slug}/imports). An import belongs to one segment generation: a slug
-- deleted and created again starts without imports. import_id is the service's ULID (26 characters
-- of Crockford's base 32 that sort in creation order), so newest first is import_id descending.
-- Counts: `lines` the file's data lines (not blank, not the header), set when the upload starts the
-- import; applied + unchanged + rejected grow by one per line, once, and add up to `lines` when done.
CREATE DOMAIN segments_import_id AS text COLLATE "C"
    CHECK (VALUE ~ '^[0-9A-HJKMNP-TV-Z]{26}$');

CREATE TABLE segment_import (
    import_id         segments_import_id PRIMARY KEY,
    slug              segments_slug NOT NULL,
    generation        integer NOT NULL,
    mode              text NOT NULL CHECK (mode IN ('add', 'remove')),
    ttl_seconds       integer CHECK (ttl_seconds BETWEEN 1 AND 315360000),
    expires_at        timestamptz,  -- a fixed expiry of every add; the API's `expires_at`
    status            text NOT NULL
                      CHECK (status IN ('awaiting_upload', 'running', 'done', 'failed', 'expired')),
    lines             integer NOT NULL DEFAULT 0 CHECK (lines BETWEEN 0 AND 10000000),
    applied           integer NOT NULL DEFAULT 0 CHECK (applied >= 0),
    unchanged         integer NOT NULL DEFAULT 0 CHECK (unchanged >= 0),
    rejected          integer NOT NULL DEFAULT 0 CHECK (rejected >= 0),
    failure           text,
    created_at        timestamptz NOT NULL,
    upload_expires_at timestamptz NOT NULL,  -- the presigned link's end: unused by then, the import expires
    started_at        timestamptz,
    finished_at       timestamptz,
    FOREIGN KEY (slug, generation) REFERENCES segment (slug, generation),
    -- An expiry is for adds only, and one kind at most: ttl_seconds (from each add) or expires_at.
    CONSTRAINT import_expiry_only_with_add CHECK (
        mode = 'add' OR (ttl_seconds IS NULL AND expires_at IS NULL)),
    CONSTRAINT import_one_kind_of_expiry CHECK (ttl_seconds IS NULL OR expires_at IS NULL),
    CONSTRAINT import_expiry_within_ten_years CHECK (
        expires_at > created_at AND expires_at <= created_at + interval '3650 days'),
    CONSTRAINT import_counts_add_up CHECK (
        applied + unchanged + rejected <= lines
        AND (status <> 'done' OR applied + unchanged + rejected = lines)),
    CONSTRAINT import_no_lines_without_upload CHECK (
        status NOT IN ('awaiting_upload', 'expired') OR lines = 0),
    -- started_at: the upload arrived; finished_at: the import ended; failure: why it failed.
    CONSTRAINT import_started_iff_uploaded CHECK (
        (started_at IS NULL) = (status IN ('awaiting_upload', 'expired'))),
    CONSTRAINT import_finished_iff_ended CHECK (
        (finished_at IS NULL) = (status IN ('awaiting_upload', 'running'))),
    CONSTRAINT import_failure_iff_failed CHECK ((failure IS NULL) = (status <> 'failed')),
    CONSTRAINT import_times_in_order CHECK (
        created_at < upload_expires_at AND created_at <= started_at AND started_at <= finished_at
        AND created_at <= finished_at)
);
-- GET /segments/{slug}/imports: a generation's imports, newest first (keyset by import_id).
CREATE INDEX segment_import_by_segment ON segment_import (slug, generation, import_id);
-- The links that may expire unused (the sweep of expire_imports).
CREATE INDEX segment_import_awaiting ON segment_import (upload_expires_at) WHERE status = 'awaiting_upload';

-- Every data line of an import's file, once, with its outcome: the primary key makes a line
-- counted once however often it is applied (a retry returns the first outcome). A good line holds
-- its user id: `applied` (the user's membership changed) or `unchanged` (already in that state) for
-- the line that decided the user (the service's mark), `duplicate` for any other line of that user,
-- counted unchanged. A bad line holds its text and why (the errors CSV `line;value;error`).
CREATE TABLE import_line (
    import_id segments_import_id NOT NULL REFERENCES segment_import (import_id),
    line      integer NOT NULL CHECK (line > 0),  -- physical line number from 1, blank lines included
    user_id   bigint CHECK (user_id > 0),
    value     text,
    error     text,
    outcome   text NOT NULL CHECK (outcome IN ('applied', 'unchanged', 'duplicate', 'rejected')),
    PRIMARY KEY (import_id, line),
    CONSTRAINT import_line_good_or_bad CHECK (
        CASE WHEN outcome = 'rejected' THEN user_id IS NULL AND value IS NOT NULL AND error IS NOT NULL
             ELSE user_id IS NOT NULL AND value IS NULL AND error IS NULL END)
);
-- Exactly once per (import, user): one line decides each user, whatever is retried or repeated.
CREATE UNIQUE INDEX import_line_decides_user_once ON import_line (import_id, user_id)
    WHERE outcome IN ('applied', 'unchanged');

-- Why a data line of an import's file is not a user id (NULL: it is one), in the errors CSV's
-- words: a positive 64-bit integer in canonical decimal, as everywhere in the API (1 to 19 digits,
-- no leading zero, at most 2^63 - 1). The cast only meets digits: CASE stops at the first condition
-- that holds. Lines that are not UTF-8 never reach text: the reader rejects them ('not UTF-8 text').
CREATE FUNCTION segments_user_id_error(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN value !~ '^[1-9][0-9]{0,18}$'
            THEN 'not a user id: a positive integer in canonical decimal, like 1000'
        WHEN value::numeric > 9223372036854775807 THEN 'above the largest user id, 9223372036854775807'
    END
$$;
