-- Text search in the dashboard's filter (`q`: the input URL or the error, any case) without
-- reading every row: trigram indexes, which ILIKE '%…%' uses. pg_trgm ships with Postgres
-- (contrib) and is a trusted extension since Postgres 13, so a database owner may create it;
-- Supabase has it too. Where it cannot be created, the search still works, by reading the
-- table (the warning says so), and nothing else changes.
do $$
begin
    begin
        create extension if not exists pg_trgm;
    exception when others then
        raise warning 'pg_trgm could not be created (%): text search in the job filter will read every job', sqlerrm;
    end;
    if exists (select 1 from pg_extension where extname = 'pg_trgm') then
        execute 'create index if not exists jobs_input_url_trgm_idx on jobs using gin (input_url gin_trgm_ops)';
        execute 'create index if not exists jobs_error_trgm_idx on jobs using gin (error gin_trgm_ops)';
    end if;
end
$$;
