-- Rate limits: attempts counted per bucket (what is limited, and for whom) in fixed windows.
-- Shared by every replica, so a limit holds however many serve the API.
CREATE TABLE rate_limits (
    bucket       TEXT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end   TIMESTAMPTZ NOT NULL,
    hits         BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_limits_window_end ON rate_limits (window_end);
