//! The API's integration tests: one binary, each test with its own app and database.

mod access;
mod cli;
mod embedded;
mod events;
mod health;
mod helpers;
mod ittybit;
mod jobs;
mod pages;
mod processor;
mod retention;
