//! Integration tests: the real application on port 0 against the real Kafka broker and Redis
//! started by `make services`. Each test has its own topic, consumer group and key prefix.

mod admin;
mod admission;
mod bad_input;
mod dead_letters;
mod events;
mod helpers;
mod join;
#[path = "../common/private_redis.rs"]
mod private_redis;
mod readiness;
mod store_model;
