-- The change feed's order key: the delivery horizon narrowed to the transactions that write the
-- change log (decision 004). Until now an entry's place was its transaction id, and readers
-- stopped below the oldest transaction running anywhere in the cluster, so one long transaction
-- on any table (autovacuum's ANALYZE, an import, a stuck session) held back every live event.
--
-- Now a transaction takes an order key when it first writes the log (`reeltime_change_key()` is
-- the column's default, so every writer counts, psql and Supabase Studio included) and holds an
-- advisory lock named by that key until it ends. Readers stop below `reeltime_change_horizon()`:
-- the smallest key still locked, or the next key to be handed out. A transaction takes its key
-- and locks it while holding a shared "gate" lock that the horizon takes exclusively, so no
-- reader ever sees a key handed out but not yet locked. Keys are taken in order and a running
-- transaction's key stays locked, so once the horizon passes a key no entry can appear below it.
--
-- Entries keep their transaction id (`xid`): a snapshot still tells which of them it shows.
--
-- Advisory lock names (two-int4 form: pg_locks shows classid, objid and objsubid 2), per
-- database: (1381258567, 0) the gate; (1381258571, key mod 2^31) a key in use. A key is rebuilt
-- from its lock as the largest issued key with that remainder: running keys are never 2^31
-- apart.

create sequence if not exists job_change_keys as bigint cache 1;

-- The gate is taken and let go at session level, inside one protected block: a leaked gate
-- would stop every reader (or every writer), so any error or cancel in between lets it go (and
-- the session's end releases it in any case).
create or replace function reeltime_change_gate_release(exclusive boolean) returns void
language plpgsql volatile as $$
begin
    if exists (select 1 from pg_locks
               where pid = pg_backend_pid() and locktype = 'advisory' and objsubid = 2
                 and classid = 1381258567::oid and objid = 0::oid
                 and mode = case when exclusive then 'ExclusiveLock' else 'ShareLock' end) then
        if exclusive then
            perform pg_advisory_unlock(1381258567, 0);
        else
            perform pg_advisory_unlock_shared(1381258567, 0);
        end if;
    end if;
end;
$$;

create or replace function reeltime_change_key() returns bigint
language plpgsql volatile as $$
declare
    key bigint := nullif(current_setting('reeltime.change_key', true), '')::bigint;
begin
    if key is not null then
        return key;
    end if;
    begin
        perform pg_advisory_lock_shared(1381258567, 0);
        key := nextval('job_change_keys');
        perform pg_advisory_xact_lock(1381258571, (key % 2147483648)::int);
        perform pg_advisory_unlock_shared(1381258567, 0);
    exception when others or query_canceled then
        perform reeltime_change_gate_release(false);
        raise;
    end;
    -- Local to the transaction, and undone by a rolled-back savepoint, as the lock is.
    perform set_config('reeltime.change_key', key::text, true);
    return key;
end;
$$;

create or replace function reeltime_change_horizon() returns bigint
language plpgsql volatile as $$
declare
    issued bigint;
    oldest bigint;
begin
    -- Waits out any writer between taking its key and locking it.
    begin
        perform pg_advisory_lock(1381258567, 0);
        issued := coalesce(pg_sequence_last_value('job_change_keys'), 0);
        select min(issued - ((issued - l.objid::bigint) % 2147483648 + 2147483648) % 2147483648)
          into oldest
          from pg_locks l
         where l.locktype = 'advisory' and l.objsubid = 2 and l.granted
           and l.classid = 1381258571::oid
           and l.database = (select oid from pg_database where datname = current_database());
        perform pg_advisory_unlock(1381258567, 0);
    exception when others or query_canceled then
        perform reeltime_change_gate_release(true);
        raise;
    end;
    return coalesce(oldest, issued + 1);
end;
$$;

-- Entries after a position, in order, with whether each is beyond the horizon: the horizon and
-- then the read, in one round trip. The read is a later statement, so its snapshot is taken
-- after every transaction below the horizon ended (a volatile function's statements each take
-- their own snapshot, in READ COMMITTED, the isolation the feed reads in).
create or replace function reeltime_read_changes(after_tx bigint, after_seq bigint, max_rows bigint)
returns table (tx_key bigint, seq bigint, xid bigint, op text, row_data jsonb, beyond boolean)
language plpgsql volatile as $$
declare
    below bigint := reeltime_change_horizon();
begin
    return query
        select c.tx_key, c.seq, (c.xid::text)::bigint, c.op, c.row_data, c.tx_key >= below
        from job_changes c
        where (c.tx_key, c.seq) > (after_tx, after_seq)
        order by c.tx_key, c.seq
        limit max_rows;
end;
$$;

-- Entries written so far keep their positions: their key is their transaction id, and new keys
-- start above every transaction id, so a client's Last-Event-ID stays valid.
alter table job_changes add column if not exists tx_key bigint;
update job_changes set tx_key = (xid::text)::bigint where tx_key is null;
select setval('job_change_keys', greatest(
    coalesce((select max(tx_key) from job_changes), 0),
    (pg_current_xact_id()::text)::bigint));
alter table job_changes
    alter column tx_key set default reeltime_change_key(),
    alter column tx_key set not null;
create index if not exists job_changes_key_idx on job_changes (tx_key, seq);
drop index if exists job_changes_position_idx;

alter table job_changes_pruned add column if not exists tx_key bigint;
update job_changes_pruned set tx_key = (xid::text)::bigint where tx_key is null;
alter table job_changes_pruned alter column tx_key set not null, drop column xid;
