//! Payments through Stripe (localstripe, a real simulator in a child process): cards, top-ups,
//! renewals paid by card, declines and retries, Stripe's events applied once.
