-- Secrets every instance on this database must agree on (issue 10): the built-in processor's
-- API key and, when ITTYBIT_WEBHOOK_SECRET is unset, the secret its webhooks are signed with.
-- The processor's queue is shared, so a job one instance accepted may be run, and its webhooks
-- signed, by another; with a secret made up per process the first one answered 401. The first
-- instance to start writes each secret (`on conflict do nothing`, so concurrent first starts
-- agree on one) and every instance reads it back. An environment value still wins.
create table if not exists instance_secrets (
    name       text primary key,
    value      text not null,
    created_at timestamptz not null default now()
);

-- Nothing but Reeltime (the table's owner, which row level security does not bind) reads it:
-- on Supabase, the Data API's roles see no rows.
alter table instance_secrets enable row level security;
