//! The event store contract, run against every adapter: one line each.

use ledger_application::store::memory::MemoryStore;

ledger_tests::event_store_contract!(memory, || async { (MemoryStore::new(), ()) });
ledger_tests::event_store_contract!(postgres, ledger_tests::postgres::postgres_store);
