//! The subcommands of `lamina`, one module each: its clap arguments next to the code that
//! runs it.

pub mod accounts;
pub mod deploy;
pub mod feedback;
pub mod keys;
pub mod logs;
pub mod nodes;
pub mod quality;
pub mod up;
pub mod usage;
