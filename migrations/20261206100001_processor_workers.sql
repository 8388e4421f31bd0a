-- The processes that run the built-in processor's workers (issue 13): `reeltime serve` with
-- workers, and `reeltime worker` processes on other machines. Each process inserts its row at
-- start, renews `seen_at` and `jobs` every few seconds, and deletes the row when it stops; a
-- process killed without stopping leaves its row, which the dashboard shows as not heard from
-- and which any live process deletes after a day. The rows are for people to read: the queue
-- itself (`processor_jobs` leases) never depends on them.
create table processor_workers (
    id         uuid        primary key,
    host       text        not null,
    pid        integer     not null,
    version    text        not null,
    -- Jobs it runs at once.
    slots      integer     not null check (slots >= 0),
    -- The processor job ids it runs now.
    jobs       text[]      not null default '{}',
    started_at timestamptz not null default now(),
    seen_at    timestamptz not null default now()
);
