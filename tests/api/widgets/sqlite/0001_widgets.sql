-- A product's own table, for the registration tests (tests/api/products.rs).
CREATE TABLE widgets (
    id          BLOB PRIMARY KEY NOT NULL,
    business_id BLOB NOT NULL REFERENCES businesses (id),
    name        TEXT NOT NULL
);
