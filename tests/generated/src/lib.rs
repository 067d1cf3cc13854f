//! A product with nothing yet.

pub mod gadgets;

use saaskit::product::Product;

pub fn product() -> Product {
    Product::new("shop")
        .resource(gadgets::resource())
        .migrations(
            sqlx::migrate!("./migrations/sqlite"),
            sqlx::migrate!("./migrations/postgres"),
        )
}
