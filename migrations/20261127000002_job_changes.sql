-- The change feed: every insert, update and delete on jobs, by any writer, is appended to
-- job_changes in the writer's own transaction, and a notification wakes the servers.
--
-- Readers deliver entries in (xid, seq) order and only below the oldest transaction still
-- running (see docs/decisions/004-change-feed-ordering.md): a sequence number is taken when a
-- row is written, not when its transaction commits, so "the highest seq seen" would skip
-- entries whose transactions commit late.

-- Each row's version: taken in a BEFORE trigger, which runs while the writer holds the row
-- lock, so a later write to the same row always carries a larger version. Readers use it to
-- ignore a change older than the state they already show.
create sequence if not exists jobs_version_seq;
alter table jobs add column if not exists version bigint not null default nextval('jobs_version_seq');

create or replace function reeltime_touch_updated_at() returns trigger
language plpgsql as $$
begin
    new.updated_at := now();
    new.version := nextval('jobs_version_seq');
    return new;
end;
$$;

create table if not exists job_changes (
    seq         bigint generated always as identity primary key,
    xid         xid8 not null default pg_current_xact_id(),
    op          text not null check (op in ('insert', 'update', 'delete')),
    job_id      uuid not null,
    -- The new row, or the old one for a delete.
    row_data    jsonb not null,
    changed_at  timestamptz not null default clock_timestamp()
);

create index if not exists job_changes_position_idx on job_changes (xid, seq);
create index if not exists job_changes_changed_at_idx on job_changes (changed_at);

-- How far pruning has gone: a reader asking to resume from before this is told to reset.
create table if not exists job_changes_pruned (
    id          boolean primary key default true check (id),
    xid         xid8 not null,
    seq         bigint not null
);
insert into job_changes_pruned (xid, seq) values ('0'::xid8, 0) on conflict do nothing;

create or replace function reeltime_record_job_change() returns trigger
language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        insert into job_changes (op, job_id, row_data) values ('delete', old.id, to_jsonb(old));
    else
        insert into job_changes (op, job_id, row_data)
            values (lower(tg_op), new.id, to_jsonb(new));
    end if;
    -- One notification per transaction (identical payloads are folded), sent at commit.
    perform pg_notify('reeltime_job_changes', '');
    return null;
end;
$$;

drop trigger if exists jobs_record_change on jobs;
create trigger jobs_record_change
    after insert or update or delete on jobs
    for each row
    execute function reeltime_record_job_change();
