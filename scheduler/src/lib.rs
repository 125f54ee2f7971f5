//! Lamina's execution semantics: which environment runs each invocation, when
//! environments are created and destroyed, concurrency limits, and async invocations.
//!
//! [`core`] holds the decisions as pure code (events in, actions out, no IO, no clock);
//! [`scheduler::Scheduler`] is the thin adapter that owns live environments and talks to
//! the execution backend and the timers; [`invocation::Invoker`] is the one entry point
//! that turns a chosen function version into an invocation; [`recorder::Recorder`] spools
//! each invocation's ledger and log records; [`metrics`] holds the counters the scheduler
//! and the dispatcher move, registered in the node's registry. In a cluster, [`slots`]
//! decides what the node holds of the cluster's concurrency limits (pure) and
//! [`slot_leases`] takes and gives back those slots in the database; [`placement`]
//! spreads provisioned concurrency over the live nodes, and [`routing`] sends each
//! function to its home nodes (both pure).

pub mod core;
pub mod dispatch;
pub mod invocation;
pub mod metrics;
pub mod placement;
pub mod recorder;
pub mod routing;
pub mod scheduler;
pub mod slot_leases;
pub mod slots;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(test)]
mod core_tests;

pub use crate::core::{FunctionKey, Limits, PoolId, ReserveError, ThrottleReason};
pub use dispatch::{DispatchConfig, Dispatcher, Leaseholder};
pub use invocation::{InvocationRequest, Invoker, PoolKey, Target};
pub use metrics::{AsyncMetrics, DeliveryTarget, InvocationMetrics};
pub use placement::Placement;
pub use recorder::{InvocationMeta, Recorder};
pub use routing::{Ask, CostBook, LocalReason, Peer, PeerState, Route, Routes, RoutingPolicy};
pub use scheduler::{InvokeError, PoolSnapshot, Scheduler, SchedulerStats};
