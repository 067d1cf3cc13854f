//! The `saaskit` binary: saaskit with the products registered on it — by default the example
//! product (`example/`). A product of your own registers here, in one line (see README, "Build
//! your product"); `cargo build --no-default-features` builds saaskit alone.

use std::process::ExitCode;

use saaskit::product::Products;

/// mimalloc rather than the system's allocator: see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let products = Products::new();
    #[cfg(feature = "example")]
    let products = products.with(saaskit_example::product());
    saaskit::cli::main(products)
}
