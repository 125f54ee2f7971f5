//! Lamina's execution semantics: which environment runs each invocation, when
//! environments are created and destroyed, concurrency limits, and async invocations.
//!
//! [`core`] holds the decisions as pure code (events in, actions out, no IO, no clock);
//! [`pools::Scheduler`] is the thin adapter that owns live environments and talks to the
//! execution backend and the timers.

pub mod core;
pub mod dispatch;
pub mod pools;
pub mod record;
pub mod telemetry;

#[cfg(test)]
mod core_tests;

pub use crate::core::{FunctionKey, Limits, PoolId, ReserveError, ThrottleReason};
pub use dispatch::{DispatchConfig, Dispatcher};
pub use pools::{InvokeError, PoolSnapshot, Scheduler, SchedulerStats, pool_key};
pub use record::{InvocationMeta, Recorder};
pub use telemetry::{DeliveryTarget, Telemetry};
