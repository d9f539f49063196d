//! The use cases, each written once: the CLI and the web app (and the JSON API to come) call
//! these, so an action behaves the same wherever a person takes it.
//!
//! - [`topics`]: correcting, confirming and settling a ticket's topic, and the retraining
//!   that follows.
//! - [`tickets`]: routing, notes, duplicates, links, replies, and registering a request
//!   taken at the desk.
//! - [`backtest`]: what an edit of the rules would change, before it goes live.

pub mod backtest;
pub mod tickets;
pub mod topics;
