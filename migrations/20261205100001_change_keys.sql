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

create or replace function reeltime_change_key() returns bigint
language plpgsql volatile as $$
declare
    key bigint := nullif(current_setting('reeltime.change_key', true), '')::bigint;
begin
    if key is not null then
        return key;
    end if;
    -- Session-level, so it is let go as soon as the key is locked. It is let go on any error
    -- too (a leaked gate would stop every reader); the session's end releases it in any case.
    perform pg_advisory_lock_shared(1381258567, 0);
    begin
        key := nextval('job_change_keys');
        perform pg_advisory_xact_lock(1381258571, (key % 2147483648)::int);
    exception when others or query_canceled then
        perform pg_advisory_unlock_shared(1381258567, 0);
        raise;
    end;
    perform pg_advisory_unlock_shared(1381258567, 0);
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
    -- Waits out any writer between taking its key and locking it. Held to the end of the
    -- caller's transaction: call this in a statement of its own, and read the log in a later
    -- one (its snapshot must be taken after the keys below the horizon ended).
    perform pg_advisory_xact_lock(1381258567, 0);
    issued := coalesce(pg_sequence_last_value('job_change_keys'), 0);
    select min(issued - ((issued - l.objid::bigint) % 2147483648 + 2147483648) % 2147483648)
      into oldest
      from pg_locks l
     where l.locktype = 'advisory' and l.objsubid = 2 and l.granted
       and l.classid = 1381258571::oid
       and l.database = (select oid from pg_database where datname = current_database());
    return coalesce(oldest, issued + 1);
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
