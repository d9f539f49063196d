//! The use cases, each written once: the CLI and the web app (and the JSON API to come) call
//! these, so an action behaves the same wherever a person takes it.
//!
//! - [`topics`]: correcting, confirming and settling a ticket's topic, and the retraining
//!   that follows.
//! - [`backtest`]: what an edit of the rules would change, before it goes live.

pub mod backtest;
pub mod topics;
