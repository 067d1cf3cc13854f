-- A product's own table, for the registration and toolkit tests (tests/api/products.rs).
CREATE TABLE widgets (
    id          BLOB PRIMARY KEY NOT NULL,
    business_id BLOB NOT NULL REFERENCES businesses (id),
    name        TEXT NOT NULL,
    size        BIGINT,
    shiny       BOOLEAN,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX widgets_business ON widgets (business_id, id);
