//! Integration tests: the real application on port 0 against the real Kafka broker and Redis
//! started by `make services`. Each test has its own topic, consumer group and key prefix.

mod admin;
mod admission;
mod bad_input;
#[path = "../common/mod.rs"]
mod common;
mod cross_site;
mod cut;
mod dead_letters;
mod events;
mod events_out;
mod fair_start;
mod gate;
mod gate_news;
mod gate_proxies;
mod helpers;
mod identity;
mod join;
mod lanes;
mod openapi;
mod order;
mod order_model;
mod outbox;
mod pages;
mod parked;
mod patch;
mod proxies;
mod readiness;
mod replicas;
mod revoke;
mod roles;
mod schemathesis;
mod secured;
mod security;
mod session_model;
mod soldout;
mod stadium;
mod store_model;
mod stream_budget;
mod webhook_caps;
mod webhook_egress;
