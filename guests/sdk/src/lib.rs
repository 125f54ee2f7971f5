//! The Rust SDK for Lamina functions: implement [`Handler`], then call [`export_handler!`].
//!
//! A function is a WebAssembly component for the `function` world of the
//! `lamina:function` WIT package. That WIT lives in the `wit/` folder at the root of
//! the Lamina repository and is the only thing a guest depends on: this crate
//! generates its bindings from there and never links any host code. Build functions
//! for `wasm32-wasip2`; the result is a component the host runs as is.
//!
//! ```rust,no_run
//! use lamina_sdk::{Context, Error, Handler};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn handle(event: Vec<u8>, _ctx: Context) -> Result<Vec<u8>, Error> {
//!         Ok(event)
//!     }
//! }
//!
//! lamina_sdk::export_handler!(Echo);
//! ```
//!
//! With the default `json` feature, a typed handler is one line each way:
//!
//! ```rust,no_run
//! use lamina_sdk::{Context, Error, Handler, json};
//!
//! #[derive(serde::Deserialize)]
//! struct Order { quantity: u32 }
//!
//! #[derive(serde::Serialize)]
//! struct Receipt { total_cents: u64 }
//!
//! struct Checkout;
//!
//! impl Handler for Checkout {
//!     fn handle(event: Vec<u8>, _ctx: Context) -> Result<Vec<u8>, Error> {
//!         let order: Order = json::from_event(&event)?;
//!         if order.quantity == 0 {
//!             return Err(Error::new("EmptyOrder", "quantity must be at least 1"));
//!         }
//!         json::to_response(&Receipt { total_cents: u64::from(order.quantity) * 250 })
//!     }
//! }
//!
//! lamina_sdk::export_handler!(Checkout);
//! ```
//!
//! As in AWS Lambda, one instance serves many invocations one after the other, so
//! globals outlive a single [`Handler::handle`]. A panic traps the instance; the host
//! then reports the invocation as failed and starts a fresh environment, running
//! [`Handler::init`] again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "json")]
pub mod json;
#[cfg(feature = "models")]
pub mod models;

/// Generated from `wit/`. Public only because [`export_handler!`] expands to paths into it.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "function",
        // The export macro expands in the function's crate, so it must be public;
        // `export_handler!` passes it `$crate::bindings`, which survives a renamed
        // dependency where the default module path would not.
        pub_export_macro: true,
        default_bindings_module: "lamina_sdk::bindings",
        export_macro_name: "__export_function",
    });
}

pub use bindings::lamina::function::types::{Context, Error};

/// A Lamina function. Both methods are associated functions rather than methods
/// because the instance itself is the state: keep what must survive between
/// invocations in statics.
pub trait Handler {
    /// Runs once per execution environment, before its first invocation.
    ///
    /// An error is reported to the host as an init failure, and the environment
    /// serves no invocations.
    fn init() -> Result<(), Error> {
        Ok(())
    }

    /// Runs once per invocation with the raw payload; the bytes returned are the
    /// response payload.
    fn handle(event: Vec<u8>, ctx: Context) -> Result<Vec<u8>, Error>;
}

impl<H: Handler> bindings::exports::lamina::function::handler::Guest for H {
    fn init() -> Result<(), Error> {
        <H as Handler>::init()
    }

    fn handle(event: Vec<u8>, context: Context) -> Result<Vec<u8>, Error> {
        <H as Handler>::handle(event, context)
    }
}

/// Exports a [`Handler`] as the component's `lamina:function/handler` interface.
///
/// Call it once per crate, at module level, with the name of the handler type.
#[macro_export]
macro_rules! export_handler {
    ($handler:ident) => {
        $crate::bindings::__export_function!($handler with_types_in $crate::bindings);
    };
}

impl Error {
    /// An error as the caller will see it: `error_type` becomes `errorType` and
    /// `message` becomes `errorMessage`.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            error_message: message.into(),
        }
    }
}

impl Context {
    /// The instant after which the host stops this invocation.
    pub fn deadline(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.deadline_ms)
    }

    /// Time left before the deadline, zero once it has passed; Lambda's
    /// `getRemainingTimeInMillis`.
    pub fn remaining_time(&self) -> Duration {
        self.deadline()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}
