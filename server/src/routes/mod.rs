//! HTTP routes, grouped by resource.

pub mod health;
pub mod jobs;
