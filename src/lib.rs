//! Sportello: what citizens send a public office (email, PEC, fax, scanned letters) becomes
//! normalized tickets in one request register, with the digitised documents attached.
//!
//! See ARCHITECTURE.md for the bird's-eye view and the invariants.

pub mod classify;
pub mod cli;
pub mod code;
pub mod config;
pub mod crashes;
pub mod domain;
pub mod email;
pub mod entities;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;
pub mod model;
pub mod ocr;
pub mod parse;
pub mod pipeline;
pub mod progress;
pub mod queue;
pub mod register;
pub mod runner;
pub mod search;
pub mod service;
pub mod signed;
pub mod sinks;
pub mod sources;
pub mod store;
#[cfg(any(test, feature = "testdata"))]
pub mod testdata;
pub mod textnorm;
pub mod web;
pub mod worker;
