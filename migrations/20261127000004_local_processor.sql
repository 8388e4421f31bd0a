-- The built-in processor (issue 5): what the dashboard shows about an output, and the
-- processor's own side of the Ittybit contract.

-- Facts about a finished job's output, from the webhook's file object.
alter table jobs
    add column if not exists output_duration_ms bigint
        constraint jobs_output_duration_ms_range check (output_duration_ms >= 0),
    add column if not exists output_size bigint
        constraint jobs_output_size_range check (output_size >= 0),
    add column if not exists output_width integer
        constraint jobs_output_width_range check (output_width > 0),
    add column if not exists output_height integer
        constraint jobs_output_height_range check (output_height > 0);

-- The built-in processor's jobs: what an Ittybit account would hold. Kept apart from `jobs`
-- (the dashboard's) because the processor is a separate service that happens to share the
-- database; the dashboard only ever reaches it over HTTP.
create table if not exists processor_jobs (
    id              text primary key,
    -- POST /jobs' Idempotency-Key; a key is reusable after 24 hours.
    idempotency_key text unique,
    kind            text not null,
    input           text not null,
    options         jsonb not null default '{}'::jsonb,
    metadata        jsonb not null default '{}'::jsonb,
    webhook_url     text,
    status          text not null default 'queued',
    progress        smallint,
    error           text,
    -- The file object of the output once succeeded.
    output          jsonb,
    created_at      timestamptz not null default now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz not null default now(),
    -- While processing: a worker owns the job until then and extends it as it goes; a job
    -- whose worker died is picked up again once it has passed.
    lease_until     timestamptz,
    attempts        integer not null default 0,
    constraint processor_jobs_status_check
        check (status in ('queued', 'processing', 'succeeded', 'failed', 'cancelled'))
);

create index if not exists processor_jobs_created_idx on processor_jobs (created_at, id);
create index if not exists processor_jobs_queue_idx on processor_jobs (created_at)
    where status in ('queued', 'processing');
