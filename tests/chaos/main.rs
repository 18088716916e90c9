//! Fault injection: the real binaries as separate processes, failures caused for real, and a
//! checker that compares every join that got 202 with what is in Redis.
//!
//! Each scenario has its own topic, group and key prefix (and its own Redis where it kills
//! Redis), so the suite runs beside the other tests. Every wait has a deadline.

mod checker;
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod events;
mod kafka_cluster;
mod order;
mod procs;
mod scenarios;
