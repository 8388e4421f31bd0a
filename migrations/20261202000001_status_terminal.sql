-- Whether a status is final (succeeded, failed, cancelled): the domain's
-- JobStatus::is_terminal, for the statements that must never move a finished job.
create or replace function reeltime_status_terminal(status text) returns boolean
language sql immutable as $$
    select reeltime_status_step(status) = 3
$$;
