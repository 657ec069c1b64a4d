//! Home of the runnable examples in the workspace's `examples/` folder. Run
//! one from the workspace root with `cargo run --example <name>`.
//!
//! The workspace README follows; its example runs as a doctest here.
#![doc = include_str!("../../../README.md")]
#![forbid(unsafe_code)]
