//! The `saaskit` binary: saaskit with the example product registered on it. A product of your
//! own replaces `saaskit::example::product()` here with its own (see README, "Build your
//! product").

use std::process::ExitCode;

use saaskit::product::Products;

fn main() -> ExitCode {
    saaskit::cli::main(Products::new().with(saaskit::example::product()))
}
