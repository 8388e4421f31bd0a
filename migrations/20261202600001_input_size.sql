-- Bytes in and the space saved on the Stats page (issue 15): the size of a job's input, as
-- the processor reports it once the job succeeded. Unknown (null) for jobs whose processor
-- does not say (Ittybit proper); the built-in processor reports it as the task's
-- `input.size` (decision 007).
alter table jobs
    add column if not exists input_size bigint
        constraint jobs_input_size_range check (input_size >= 0);

-- The built-in processor's side: the size of the input it downloaded, kept with the job so
-- every read of the job object carries it.
alter table processor_jobs
    add column if not exists input_size bigint;

-- The finished-side aggregates read input_size too: the index carries it so their scan
-- stays index-only.
drop index if exists jobs_finished_at_idx;
create index jobs_finished_at_idx on jobs (finished_at)
    include (status, created_at, started_at, output_size, input_size)
    where finished_at is not null;
