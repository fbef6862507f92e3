//! The inventory ledger's HTTP API, and the embedded default that runs it with no setup.
//!
//! # Layout
//! - [`config`]: every setting as a flag and an environment variable.
//! - [`startup`]: backends chosen from the configuration (the private cluster by default),
//!   workers, serving, ordered shutdown.
//! - [`routes`]: commands, queries and operational endpoints, all registered through the
//!   OpenAPI router so the description cannot drift from the served API.
//! - [`auth`], [`extract`], [`answer`], [`problem`]: what every command shares — tokens and
//!   roles, strict input parsing, rendered answers and request fingerprints, RFC 9457 errors.
//! - [`contract`]: what the OpenAPI description states beyond the handlers' types — the
//!   input rules as schemas built from the same constants the extractors and the domain
//!   check, and every problem response — so that the description matches what is enforced.
//! - [`server`], [`protection`]: the HTTP server loop (header timeout, connection cap,
//!   graceful shutdown) and the limits in front of the routes (host check, rate limit, load
//!   shedding, request timeout).
//! - [`expiry`]: the worker that expires reservations whose time-to-live has passed.
//! - [`order_events`]: the order flow's events consumed from RabbitMQ and NATS JetStream
//!   (deduplicated, retried within bounds, dead-lettered with a reason); [`order_actions`]:
//!   what they do to an order's holds, through the order-level commands of [`orders`].
//! - [`orders`]: order-level commands across SKUs (the order reserve saga, its recovery,
//!   release and confirm by order), for the HTTP routes and the brokers' consumers alike.
//! - [`telemetry`]: logs, metrics and the per-request middleware.
//! - [`console`]: the browser console at `/console`, its assets compiled in.

pub mod answer;
pub mod auth;
pub mod config;
pub mod console;
pub mod contract;
pub mod expiry;
pub mod extract;
pub mod order_actions;
pub mod order_events;
pub mod orders;
pub mod problem;
pub mod protection;
pub mod routes;
pub mod server;
pub mod startup;
pub mod state;
pub mod telemetry;
