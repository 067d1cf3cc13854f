//! The API's behaviour, through HTTP, on SQLite and on PostgreSQL.

mod conformance;
mod helpers;
mod smtp_sink;

mod admin;
mod audit;
mod backup;
mod billing;
mod cli;
mod compat;
mod connections;
mod direct;
mod email_verification;
mod errors;
mod generate;
mod health;
mod invitations;
mod keys;
mod login;
mod logout;
mod mail;
mod matrix;
mod me;
mod members;
mod metering;
mod openapi;
mod operators;
mod password_reset;
mod products;
mod schema;
mod sealing;
mod security;
mod sessions;
mod signup;
mod storage;
mod teams;
