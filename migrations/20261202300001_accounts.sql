-- Accounts and access (issue 11): people who sign in, their sessions, the tokens scripts use,
-- the one-time link that creates the first admin, and who created each job.

create table if not exists users (
    id                  uuid primary key default gen_random_uuid(),
    email               text not null,
    -- Argon2id, in the PHC string format ($argon2id$v=19$m=…,t=…,p=…$salt$hash).
    password_hash       text not null,
    role                text not null,
    created_at          timestamptz not null default now(),
    password_changed_at timestamptz not null default now(),
    -- Set: the account cannot sign in, and its sessions and tokens stop working.
    disabled_at         timestamptz,
    constraint users_role_check check (role in ('admin', 'operator', 'viewer')),
    constraint users_email_length check (char_length(email) between 3 and 254)
);

-- One account per address, whatever its case.
create unique index if not exists users_email_key on users (lower(email));

-- Sessions of signed-in people (tower-sessions' record: an id, its data, when it expires).
create table if not exists sessions (
    id          text primary key,
    data        jsonb not null,
    expiry_date timestamptz not null
);

create index if not exists sessions_expiry_idx on sessions (expiry_date);

-- Personal API tokens. Only a SHA-256 of the token is kept (tokens are 256 random bits, so a
-- fast hash is enough); `prefix` is its first characters, shown to tell tokens apart.
create table if not exists api_tokens (
    id           uuid primary key default gen_random_uuid(),
    user_id      uuid not null references users (id) on delete cascade,
    name         text not null,
    scope        text not null,
    token_hash   bytea not null unique,
    prefix       text not null,
    created_at   timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    constraint api_tokens_scope_check check (scope in ('read', 'write')),
    constraint api_tokens_name_length check (char_length(name) between 1 and 100)
);

create index if not exists api_tokens_user_idx on api_tokens (user_id, created_at);

-- The first-run setup link: while no account exists, each start makes a new one (replacing
-- the last); using it creates the first admin, and then no link works any more.
create table if not exists setup_links (
    id         boolean primary key default true check (id),
    token_hash bytea not null,
    expires_at timestamptz not null
);

-- Who created a job (null for jobs written by other means: psql, Studio, older versions).
alter table jobs add column if not exists created_by uuid references users (id) on delete set null;
