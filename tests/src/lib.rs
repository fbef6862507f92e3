//! Test support shared by the end-to-end tests.
//!
//! # Layout
//! - [`postgres`]: a real PostgreSQL for every test — `DATABASE_URL` when set, otherwise a
//!   private throwaway cluster started once per test process — with a fresh database per test.
//! - [`ledger`]: a ledger on such a database (store, handler on a manual clock, read models,
//!   projectors on demand), polling with a deadline, and commands from plain values.
//! - [`tls_postgres`]: a private PostgreSQL of its own per test that accepts TCP over TLS only,
//!   with the compose topology's certificates, for the adapter's `sslmode` tests.
//! - [`proxy`]: a TCP proxy that stalls or cuts connections on cue (also around a `COMMIT`).
//! - [`dashboard`]: the Grafana dashboard's metric names per panel, and the names a `/metrics`
//!   exposition exports, to check one against the other.
//! - [`contract`]: the event store contract suite, generic over the port, and the
//!   [`event_store_contract!`] macro that runs it against one adapter in one line.

pub mod contract;
pub mod dashboard;
pub mod ledger;
pub mod postgres;
pub mod proxy;
pub mod tls_postgres;
