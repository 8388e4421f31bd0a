//! The API's integration tests: one binary, each test with its own app and database.

mod access;
mod bad_input;
mod callbacks;
mod cli;
mod deploy;
mod disk;
mod embedded;
mod events;
mod health;
mod helpers;
mod ittybit;
mod jobs;
mod metrics;
mod openapi;
mod oracle;
mod pages;
mod processor;
mod processor_paths;
mod proxy;
mod replay;
mod reports;
mod retention;
mod shared_secrets;
mod sse;
mod stats;
mod supabase;
