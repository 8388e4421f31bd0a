-- Files people upload to become jobs' inputs (issue 13). A file goes up in numbered parts of
-- `part_bytes` (the last may be shorter), each stored as its own object
-- (`uploads/<id>/<n>`) and recorded in `upload_parts` once it is whole in the store. A dropped
-- connection loses at most the part in flight: the client asks which parts arrived and sends
-- the rest, to any instance. Once every part is there, `completed_at` is set and the file is
-- served (its parts in order) at `/uploads/<id>/<name>`, which a job names as its input.
create table uploads (
    id           uuid        primary key,
    created_by   uuid        references users (id) on delete set null,
    name         text        not null check (length(name) between 1 and 255),
    content_type text        not null,
    size         bigint      not null check (size > 0),
    part_bytes   integer     not null check (part_bytes > 0),
    created_at   timestamptz not null default now(),
    completed_at timestamptz
);

create table upload_parts (
    upload_id uuid    not null references uploads (id) on delete cascade,
    n         integer not null check (n >= 0),
    primary key (upload_id, n)
);
