-- The Stats page (issue 15): when a job started processing and when it finished, kept by the
-- database for every writer (like updated_at), and indexes for the page's aggregates.

alter table jobs
    add column if not exists started_at  timestamptz,
    add column if not exists finished_at timestamptz;

-- Set once, on the first write that moves the job into processing (started_at) or into a
-- terminal status (finished_at). A job that goes straight to a terminal status never started.
create or replace function reeltime_stamp_job_times() returns trigger
language plpgsql as $$
begin
    if new.status = 'processing' and new.started_at is null then
        new.started_at := now();
    end if;
    if reeltime_status_terminal(new.status) and new.finished_at is null then
        new.finished_at := now();
    end if;
    return new;
end;
$$;

drop trigger if exists jobs_stamp_times on jobs;
create trigger jobs_stamp_times
    before insert or update of status on jobs
    for each row
    execute function reeltime_stamp_job_times();

-- Jobs already finished: their last change is the best guess of when. A backfill, not a
-- change to the jobs: without the triggers, so it neither bumps versions nor fills the change
-- log (and keeps updated_at).
alter table jobs disable trigger user;
update jobs set finished_at = updated_at
    where finished_at is null and reeltime_status_terminal(status);
alter table jobs enable trigger user;

-- Jobs per minute and the created-side figures read a window of created_at
-- (jobs_created_at_id_idx serves those); the finished-side ones read a window of finished_at.
create index if not exists jobs_finished_at_idx on jobs (finished_at)
    include (status, created_at, started_at, output_size)
    where finished_at is not null;

-- Jobs not yet finished (the "processing now" figure, and the dispatcher's pending ones): few
-- at any time, however many finished jobs the table holds.
create index if not exists jobs_active_idx on jobs (status)
    where status in ('pending', 'queued', 'processing');
