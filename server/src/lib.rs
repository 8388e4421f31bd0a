//! The Reeltime server: configuration, start-up, routes, and the embedded Postgres.

pub mod auth;
pub mod backend;
pub mod backoff;
pub mod changes;
pub mod cli;
pub mod config;
pub mod disk;
pub mod dispatch;
pub mod embedded_pg;
pub mod error;
pub mod ittybit;
pub mod metrics;
pub mod net_error;
pub mod processor;
pub mod proxy;
pub mod retention;
pub mod routes;
pub mod serve;
pub mod site;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod unix_user;
pub mod uploads;
pub mod worker_process;
