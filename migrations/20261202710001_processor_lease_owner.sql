-- Issue 10: a processor job's lease names its owner. Each claim draws a new token; every
-- write a worker makes (progress, lease renewal, finish, requeue) carries it, so a worker
-- whose lease ran out and was taken by another writes nothing and stops its ffmpeg. The
-- token also names the attempt's work directory (<processor dir>/work/<job id>.<token>).
alter table processor_jobs
    add column if not exists lease_owner uuid;
