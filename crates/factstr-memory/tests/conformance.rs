//! The whole conformance suite against `MemoryStore`.

use factstr_memory::MemoryStore;

fn new_store() -> MemoryStore {
    MemoryStore::new()
}

factstr_conformance::conformance_tests!(new_store);
