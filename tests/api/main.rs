//! The API's behaviour, through HTTP, on SQLite and on PostgreSQL.

mod helpers;

mod cli;
mod errors;
mod login;
mod logout;
mod me;
mod schema;
mod signup;
mod storage;
