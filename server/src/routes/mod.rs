//! HTTP routes, grouped by resource.

pub mod events;
pub mod health;
pub mod ittybit;
pub mod jobs;
