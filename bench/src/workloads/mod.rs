//! The workloads. Each takes a launched [`System`](crate::systems::System) and returns
//! raw measurements; `main` turns them into table rows.

pub mod concurrent;
pub mod kafka;
pub mod queue;
pub mod serial;
pub mod sqs;
