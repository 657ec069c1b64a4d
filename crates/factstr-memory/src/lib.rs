#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod index;
mod log;
mod store;

pub use store::MemoryStore;
