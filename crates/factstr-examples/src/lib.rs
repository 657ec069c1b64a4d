//! Home of the runnable examples in the workspace's `examples/` folder (run
//! one from the workspace root with `cargo run --example <name>`), and of the
//! documentation's code: every Rust snippet of `README.md` and `docs/*.md`
//! compiles and runs as a doctest of this crate.
#![doc = include_str!("../../../README.md")]
#![forbid(unsafe_code)]

/// The READMEs of the published crates whose examples need more than the
/// crate's own published dependencies.
pub mod crate_readmes {
    #[doc = include_str!("../../factstr/README.md")]
    pub mod factstr {}
}

/// The pages of `docs/`, included so that their examples run as doctests.
pub mod docs {
    #[doc = include_str!("../../../docs/core-concepts.md")]
    pub mod core_concepts {}

    #[doc = include_str!("../../../docs/streams.md")]
    pub mod streams {}

    #[doc = include_str!("../../../docs/async.md")]
    pub mod async_api {}

    #[doc = include_str!("../../../docs/getting-started.md")]
    pub mod getting_started {}

    #[doc = include_str!("../../../docs/stores.md")]
    pub mod stores {}

    #[doc = include_str!("../../../docs/sqlite.md")]
    pub mod sqlite {}

    #[doc = include_str!("../../../docs/postgres.md")]
    pub mod postgres {}

    #[doc = include_str!("../../../docs/design.md")]
    pub mod design {}

    #[doc = include_str!("../../../docs/reference.md")]
    pub mod reference {}

    #[doc = include_str!("../../../docs/performance.md")]
    pub mod performance {}

    #[doc = include_str!("../../../docs/migrating-from-0.5.md")]
    pub mod migrating_from_0_5 {}
}
