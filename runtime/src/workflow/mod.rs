//! Durable workflows: starting them, running and recovering them, and their steps.

pub(crate) mod call;
pub(crate) mod context;
pub(crate) mod engine;
pub(crate) mod lease;
pub(crate) mod step;
