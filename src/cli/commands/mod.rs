//! One file per sub-command, each with its arguments and its `exec`, in the manner of cargo.

use super::*;

pub mod classify;
pub mod dossier;
pub mod entities;
pub mod export;
pub mod extract;
pub mod ingest;
pub mod migrate;
pub mod model;
pub mod ocr;
pub mod register;
pub mod rules;
pub mod run;
pub mod search;
pub mod tickets;
pub mod users;
pub mod worker;

pub use model::ModelCommand;
pub use register::RegisterCommand;
pub use rules::RulesCommand;
pub use tickets::TicketsCommand;
pub use users::UsersCommand;
