-- A product's own table, for the registration and toolkit tests (tests/api/products.rs).
CREATE TABLE widgets (
    id          UUID PRIMARY KEY,
    business_id UUID NOT NULL REFERENCES businesses (id),
    name        TEXT NOT NULL,
    size        BIGINT,
    shiny       BOOLEAN,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX widgets_business ON widgets (business_id, id);
