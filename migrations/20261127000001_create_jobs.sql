-- The jobs table: the seed guide's columns, plus what a media job needs (kind and options),
-- with the status set enforced and updated_at kept by the database for every writer.
-- Plain SQL that runs unchanged on Supabase (no superuser-only statements, no extensions:
-- gen_random_uuid() is built into Postgres 13 and later).

create table if not exists jobs (
    id          uuid primary key default gen_random_uuid(),
    input_url   text not null,
    kind        text not null default 'video',
    options     jsonb not null default '{}'::jsonb,
    task_id     text,
    status      text not null default 'pending',
    output_url  text,
    error       text,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    constraint jobs_status_check
        check (status in ('pending', 'queued', 'processing', 'succeeded', 'failed', 'cancelled')),
    constraint jobs_kind_check
        check (kind in ('video', 'audio', 'image', 'animation', 'adaptive_video')),
    constraint jobs_options_is_object check (jsonb_typeof(options) = 'object'),
    constraint jobs_input_url_length check (char_length(input_url) between 1 and 2048)
);

-- The dashboard lists newest first and pages with a (created_at, id) cursor.
create index if not exists jobs_created_at_id_idx on jobs (created_at desc, id desc);

create or replace function reeltime_touch_updated_at() returns trigger
language plpgsql as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

drop trigger if exists jobs_touch_updated_at on jobs;
create trigger jobs_touch_updated_at
    before update on jobs
    for each row
    execute function reeltime_touch_updated_at();
