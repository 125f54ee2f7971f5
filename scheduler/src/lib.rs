//! Lamina's execution semantics: which environment runs each invocation, when
//! environments are created and destroyed, concurrency limits, and async invocations.
//!
//! [`core`] holds the decisions as pure code (events in, actions out, no IO, no clock);
//! [`scheduler::Scheduler`] is the thin adapter that owns live environments and talks to
//! the execution backend and the timers; [`invocation::Invoker`] is the one entry point
//! that turns a chosen function version into an invocation.

pub mod core;
pub mod dispatch;
pub mod invocation;
pub mod record;
pub mod scheduler;
pub mod telemetry;

#[cfg(test)]
mod core_tests;

pub use crate::core::{FunctionKey, Limits, PoolId, ReserveError, ThrottleReason};
pub use dispatch::{DispatchConfig, Dispatcher};
pub use invocation::{InvocationRequest, Invoker, PoolKey, Target};
pub use record::{InvocationMeta, Recorder};
pub use scheduler::{InvokeError, PoolSnapshot, Scheduler, SchedulerStats};
pub use telemetry::{DeliveryTarget, Telemetry};
