//! The only place with SQL: one module per aggregate. Every function takes a [`Conn`] borrowed
//! from a transaction and runs one statement, written once for both databases.
//!
//! [`Conn`]: crate::db::Conn

pub mod audit;
pub mod backup_runs;
pub mod businesses;
pub mod events;
pub mod identities;
pub mod ledger;
pub mod members;
pub mod mfa;
pub mod one_time_keys;
pub mod outbox;
pub mod passkeys;
pub mod payments;
pub mod plans;
pub mod rate_limits;
pub mod subscriptions;
pub mod tokens;
pub mod usage;
pub mod users;
pub mod webhooks;
