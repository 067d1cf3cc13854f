//! Background loops started by `saaskit serve`: each is safe to run on every replica at once.

pub mod backup;
pub mod mail;
pub mod renew;
pub mod webhooks;
