//! An axum service on FACTSTR (being written).
fn main() {}
