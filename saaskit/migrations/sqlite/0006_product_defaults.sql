-- The default limits products give saaskit's plans (`Product::default_limit`), each applied
-- once: a row here means the limit was set (or the plan already had one), so a limit staff
-- later removed or changed is never set again.
CREATE TABLE product_default_limits (
    plan_code  TEXT NOT NULL,
    meter      TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (plan_code, meter)
);
