//! queuegate: a waiting-queue gateway for concert ticket on-sales.
//!
//! The data flow, one module per part: the front door ([`gateway`]) validates a join and hands
//! it to the [`producer`], which answers only once Kafka has it; the [`consumer`] moves joins
//! from Kafka into the Redis queue [`store`], exactly once in effect; [`admin`] lets operators
//! run the [`concerts`]. [`startup`] wires the roles together, with every background task under
//! the [`supervisor`]; [`kafka`] configures every Kafka client and [`routes`] holds the route
//! tables' machinery. See `docs/development.md` and `docs/explain-design.md` for the module map, `docs/` for the guarantees.

pub mod admin;
pub mod admission;
pub mod admitter;
pub mod clock;
pub mod concerts;
pub mod config;
pub mod consumer;
pub mod dlt;
pub mod events;
pub mod fairness;
pub mod fan_status;
pub mod gate;
pub mod gateway;
pub mod identity;
pub mod ids;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod periodic;
pub mod problem;
pub mod producer;
pub mod routes;
pub mod startup;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod token;
pub mod trace;
pub mod watermark;
