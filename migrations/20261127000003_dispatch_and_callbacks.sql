-- Dispatch to Ittybit and its callbacks.

-- Progress within `processing`, 0-100, from Ittybit's tasks; it never goes backwards.
alter table jobs add column if not exists progress smallint
    constraint jobs_progress_range check (progress between 0 and 100);

-- Lookups by Ittybit's job id (webhooks without our metadata, the reconciler).
create index if not exists jobs_task_id_idx on jobs (task_id) where task_id is not null;

-- The dispatcher's bookkeeping, one row per job it has tried to send, kept apart from `jobs`
-- so that claiming and retrying do not show up as changes to the job.
create table if not exists job_dispatch (
    job_id          uuid primary key references jobs (id) on delete cascade,
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- While set and in the future, one dispatcher owns the job's next call.
    lease_until     timestamptz,
    last_error      text,
    -- Last time Ittybit told us anything about the job (webhook or reconcile read).
    last_news_at    timestamptz
);

create index if not exists job_dispatch_due_idx on job_dispatch (next_attempt_at);

-- Every webhook delivery, verified or not, for audit and replay.
create table if not exists webhook_deliveries (
    id              bigint generated always as identity primary key,
    received_at     timestamptz not null default now(),
    signature_ok    boolean not null,
    ittybit_id      text,
    job_id          uuid,
    status          text,
    outcome         text not null,
    raw_body        bytea not null
);

create index if not exists webhook_deliveries_job_idx on webhook_deliveries (job_id, received_at);

-- How far along a status is (pending 0, queued 1, processing 2, terminal 3): the same rule
-- as the domain core's JobStatus::step, for the one-statement callback update.
create or replace function reeltime_status_step(status text) returns integer
language sql immutable as $$
    select case status
        when 'pending' then 0
        when 'queued' then 1
        when 'processing' then 2
        else 3
    end
$$;
