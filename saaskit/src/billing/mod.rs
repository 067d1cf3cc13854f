//! Billing: plans, subscriptions and their lifecycle, the credits ledger, and the renewal sweep.

pub mod admin;
pub mod catalogue;
pub mod changes;
pub mod events;
pub mod lifecycle;
pub mod proration;
pub mod sweep;
