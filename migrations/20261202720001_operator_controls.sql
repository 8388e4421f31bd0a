-- Operator controls (issue 12): retries linked to what they retry, filters that stay on an
-- index, and each job's story, kept beyond the change log's retention.

-- A retry is a new job with the same input and options; it remembers which job it retries.
alter table jobs
    add column if not exists retry_of uuid references jobs (id) on delete set null;
create index if not exists jobs_retry_of_idx on jobs (retry_of) where retry_of is not null;

-- Filtered pages: a status tab walks its own slice newest first, and the status counts are
-- read from it.
create index if not exists jobs_status_created_at_id_idx
    on jobs (status, created_at desc, id desc);

-- A job's story, oldest first: what happened, when, and who or what did it. Written in the
-- same transaction as the change it records (the trigger below for the row's own changes,
-- the writers for actions and dispatch attempts), and deleted with the job.
create table if not exists job_events (
    id      bigint generated always as identity primary key,
    job_id  uuid not null references jobs (id) on delete cascade,
    at      timestamptz not null default now(),
    -- created, status, progress, action, dispatch
    kind    text not null,
    -- A person's e-mail, or what acted: 'Ittybit', 'The built-in processor', 'the dispatcher'.
    actor   text not null,
    detail  jsonb not null default '{}'::jsonb,
    constraint job_events_kind_check
        check (kind in ('created', 'status', 'progress', 'action', 'dispatch'))
);
create index if not exists job_events_job_idx on job_events (job_id, id);

-- Who is writing: a writer may say (`set_config('reeltime.actor', …, true)`, local to its
-- transaction: reports name their service, actions the person); otherwise the submitting
-- account for inserts, and 'a direct database write' for updates (psql, Supabase Studio).
create or replace function reeltime_actor(fallback text) returns text
language sql stable as $$
    select coalesce(nullif(current_setting('reeltime.actor', true), ''), fallback)
$$;

create or replace function reeltime_record_job_event() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        insert into job_events (job_id, kind, actor, detail)
        values (new.id, 'created',
                reeltime_actor(coalesce((select email from users where id = new.created_by),
                                        'the database')),
                jsonb_strip_nulls(jsonb_build_object('input_url', new.input_url,
                    'kind', new.kind, 'options', new.options, 'retry_of', new.retry_of)));
        return null;
    end if;
    if new.status is distinct from old.status then
        insert into job_events (job_id, kind, actor, detail)
        values (new.id, 'status', reeltime_actor('a direct database write'),
                jsonb_strip_nulls(jsonb_build_object('from', old.status, 'to', new.status,
                    'error', case when new.status = 'failed' then new.error end,
                    'task_id', new.task_id)));
    end if;
    -- Progress milestones: each quarter crossed, once.
    if coalesce(new.progress, 0) / 25 > coalesce(old.progress, 0) / 25
       and new.status = 'processing' then
        insert into job_events (job_id, kind, actor, detail)
        values (new.id, 'progress', reeltime_actor('a direct database write'),
                jsonb_build_object('progress', (new.progress / 25) * 25));
    end if;
    return null;
end;
$$;

drop trigger if exists jobs_record_event on jobs;
create trigger jobs_record_event
    after insert or update of status, progress on jobs
    for each row
    execute function reeltime_record_job_event();

-- The jobs a filter lets through (`reeltime::JobFilter::matches` in SQL): every condition
-- given must hold; a null one is left out. `q` is a LIKE pattern (the caller escapes the text
-- and adds the % around it). Inlined by the planner, so each caller's statement keeps its
-- indexes; callers ask for custom plans, so the nulls fold away.
create or replace function reeltime_filtered_jobs(
    p_status text, p_kind text, p_preset_kind text, p_preset_options jsonb, p_q text,
    p_from timestamptz, p_to timestamptz)
returns setof jobs
language sql stable as $$
    select * from jobs
    where (p_status is null or status = p_status)
      and (p_kind is null or kind = p_kind)
      and (p_preset_kind is null or (kind = p_preset_kind and options = p_preset_options))
      and (p_q is null or input_url ilike p_q or error ilike p_q)
      and (p_from is null or created_at >= p_from)
      and (p_to is null or created_at < p_to)
$$;
