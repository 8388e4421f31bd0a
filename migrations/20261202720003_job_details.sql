-- How a job's work was done (issue 12), for its page: the built-in processor keeps its ffmpeg
-- command, the input's and output's probe facts and, on failure, the end of ffmpeg's stderr,
-- and reports them with the job (a Reeltime extension of the task object); the dashboard keeps
-- the latest report of them beside the job, not in it, so the change feed and the API stay lean.
alter table processor_jobs
    add column if not exists details jsonb;

create table if not exists job_details (
    job_id      uuid primary key references jobs (id) on delete cascade,
    details     jsonb not null,
    updated_at  timestamptz not null default now()
);
