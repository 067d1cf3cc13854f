//! saaskit: the backend every SaaS needs — accounts, businesses and their members, plans and
//! subscriptions, quotas and API keys — as a library you extend and a binary you run, on SQLite
//! or PostgreSQL.

pub mod accounts;
pub mod app;
pub mod audit;
pub mod backup;
pub mod billing;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod mail;
pub mod metering;
pub mod metrics;
pub mod oidc;
pub mod payments;
pub mod product;
pub mod ratelimit;
pub mod resource;
pub mod seal;
pub mod secret;
pub mod server;
pub mod store;
pub mod teams;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod web;
pub mod webhooks;
