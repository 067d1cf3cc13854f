-- A product's own table, for the registration tests (tests/api/products.rs).
CREATE TABLE widgets (
    id          UUID PRIMARY KEY,
    business_id UUID NOT NULL REFERENCES businesses (id),
    name        TEXT NOT NULL
);
