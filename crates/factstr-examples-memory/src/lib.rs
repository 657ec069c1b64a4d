//! Home of the runnable examples of `examples/` that need nothing but the
//! memory store (`basic_memory`, `account_projection`, `live_subscriptions`):
//! a package of their own keeps their first build small. Run one from the
//! workspace root with `cargo run --example <name>`.
#![forbid(unsafe_code)]
