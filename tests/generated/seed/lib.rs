//! A product with nothing yet.

use saaskit::product::Product;

pub fn product() -> Product {
    Product::new("shop")
}
