-- On Supabase (issue 15): the seed's supabase-js dashboard follows `jobs` through Realtime,
-- which reads the `supabase_realtime` publication. Add `jobs` to it when the publication
-- exists (a plain Postgres has none: nothing happens) and does not already carry it (a
-- publication FOR ALL TABLES carries every table and cannot take one more).
-- Without the rights to change the publication (it belongs to someone else), say so and go on:
-- Reeltime's own live feed does not depend on it. Row level security stays the owner's call
-- (docs/deploy/supabase.md): Reeltime connects as the table's owner, which RLS does not bind
-- unless forced.
do $$
begin
    if exists (select 1 from pg_publication where pubname = 'supabase_realtime' and not puballtables)
       and not exists (select 1 from pg_publication_tables
                       where pubname = 'supabase_realtime'
                         and schemaname = current_schema()
                         and tablename = 'jobs') then
        begin
            execute 'alter publication supabase_realtime add table jobs';
        exception when insufficient_privilege then
            raise warning 'jobs was not added to the supabase_realtime publication (%): add it in Supabase''s dashboard (Database, Replication) for Realtime', sqlerrm;
        end;
    end if;
end
$$;
