//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Names carry the `queuegate_` prefix and their unit; labels are bounded (routes are the
//! route patterns of the listeners' route tables ([`crate::routes::label`]), never raw paths; statuses and outcomes are small fixed sets).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use rdkafka::statistics::Statistics;

/// Every metric of one process.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub produce_duration: HistogramVec,
    pub produce_errors: IntCounterVec,
    pub produce_in_flight: IntGauge,
    pub consumer_records: IntCounterVec,
    pub consumer_batch_size: HistogramVec,
    pub redis_duration: HistogramVec,
    pub consumer_retries: IntCounterVec,
    pub consumer_rebalances: IntCounterVec,
    pub consumer_quarantined: prometheus::IntCounter,
    pub consumer_carried: IntGauge,
    pub consumer_parked_concerts: IntGauge,
    /// Concerts whose offsets the consumer holds back until their writes reach the replicas.
    pub consumer_held_concerts: IntGauge,
    /// How long the oldest of those holds has lasted (s).
    pub consumer_held_seconds: prometheus::Gauge,
    pub redis_under_replicated_shards: IntGauge,
    pub redis_down_shards: IntGauge,
    /// Gate checks by outcome (session, session_checked, exchanged, to_room, ended, unbound, limited).
    pub gate_checks: IntCounterVec,
    pub gate_sessions_started: prometheus::IntCounter,
    pub gate_direct_refused: IntCounterVec,
    /// Gate sessions ended by reason (idle, max, completed, operator, revoked).
    pub gate_sessions_ended: IntCounterVec,
    /// Live gate sessions per concert.
    pub gate_sessions: IntGaugeVec,
    /// Ended gate sessions this gateway remembers (each for its concert's sessionMaxSeconds).
    pub gate_ended_remembered: IntGauge,
    pub gate_refused_remembered: IntGauge,
    pub admissions: IntCounterVec,
    /// Admission rounds this process finished (each looks at every open concert).
    pub admission_rounds: prometheus::IntCounter,
    /// How far the watermark is behind this process's clock (s), as of its last admission round.
    pub watermark_age: prometheus::Gauge,
    /// Fans staged per concert: accepted, applied, waiting for the watermark to be placed.
    pub order_held_fans: IntGaugeVec,
    /// Fans this process placed in stamp order.
    pub order_placed: prometheus::IntCounter,
    pub concert_fans: IntGaugeVec,
    pub lane_fans: IntGaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub kafka_queued: IntGaugeVec,
    pub kafka_broker_rtt: GaugeVec,
    pub status_reads: IntCounterVec,
    pub stream_events: IntCounterVec,
    pub open_streams: IntGauge,
    pub view_fans: IntGauge,
    /// Events the outbox relay published to the events topic.
    pub events_published: prometheus::IntCounter,
    pub events_unsealed: prometheus::IntCounter,
    /// Events dropped instead of published, by reason (outbox_full: a concert's outbox at
    /// QUEUEGATE_EVENTS_OUTBOX_MAX while the events topic could not be written).
    pub events_dropped: IntCounterVec,
    /// Entries in each concert's outbox, as this process's relay last looked.
    pub events_outbox_entries: IntGaugeVec,
    /// 1 while this process's relay finds the events topic missing or unwritable.
    pub events_topic_unwritable: IntGauge,
    /// Webhook delivery attempts, by outcome (delivered, failed, gave_up).
    pub webhook_deliveries: IntCounterVec,
    /// Seconds from a change to its webhook's successful delivery.
    pub webhook_delay: prometheus::Histogram,
    /// Webhook deliveries dropped instead of queued, by reason (full, suspended).
    pub webhook_dropped: IntCounterVec,
    /// Deliveries pending per webhook endpoint, and their bodies' bytes, as this process's
    /// delivery task last saw them.
    pub webhook_pending: IntGaugeVec,
    pub webhook_pending_bytes: IntGaugeVec,
    /// Webhook endpoints this process delivers for that are suspended.
    pub webhook_suspended_endpoints: IntGauge,
    /// Admin changes answered 2xx, by whether their audit record was written (recorded, failed).
    pub admin_actions: IntCounterVec,
    /// Audit records dropped from the tail of a concert's list at QUEUEGATE_ADMIN_AUDIT_KEPT.
    pub admin_audit_trimmed: prometheus::IntCounter,
    /// Admin calls refused by reason: token (none, or unknown: 401), role (below the route's: 403).
    pub admin_refused: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

impl Metrics {
    /// Sets the shard gauges from one look at Redis (readiness and a 5 s round both look).
    pub fn observe_redis_health(&self, h: &crate::store::RedisHealth) {
        self.redis_under_replicated_shards.set(h.under_replicated() as i64);
        self.redis_down_shards.set(h.down() as i64);
    }

    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Metrics {
            status_reads: IntCounterVec::new(
                Opts::new(
                    "queuegate_status_reads_total",
                    "Fans' status reads (polls, stream openings) by where the answer came from: view or redis",
                ),
                &["source"],
            )
            .expect("valid metric"),
            stream_events: IntCounterVec::new(
                Opts::new(
                    "queuegate_stream_events_total",
                    "Frames sent on status streams, by kind: status, heartbeat, reconnect",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            admin_actions: IntCounterVec::new(
                Opts::new(
                    "queuegate_admin_actions_total",
                    "Admin changes answered 2xx, by whether their audit record (list and event) was written: recorded, failed",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            admin_audit_trimmed: prometheus::IntCounter::new(
                "queuegate_admin_audit_trimmed_total",
                "Oldest audit records dropped from concerts' audit lists at QUEUEGATE_ADMIN_AUDIT_KEPT",
            )
            .expect("valid metric"),
            admin_refused: IntCounterVec::new(
                Opts::new(
                    "queuegate_admin_refused_total",
                    "Admin calls refused: token (missing or unknown, 401), role (the token's role is below the route's, 403)",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            open_streams: IntGauge::new("queuegate_status_streams_open", "Status streams open on this gateway")
                .expect("valid metric"),
            gate_ended_remembered: IntGauge::new(
                "queuegate_gate_ended_sessions_remembered",
                "Ended gate sessions this gateway remembers (per concert at most 100,000, each for its sessionMaxSeconds), to refuse their cookies without asking Redis",
            )
            .expect("valid metric"),
            gate_refused_remembered: IntGauge::new(
                "queuegate_gate_refused_tokens_remembered",
                "Admission tokens Redis refused that this gateway remembers, to refuse them again without asking (at most 100,000)",
            )
            .expect("valid metric"),
            view_fans: IntGauge::new(
                "queuegate_view_fans",
                "Fans this gateway's per-concert views track (streaming, or polled in the last minute)",
            )
            .expect("valid metric"),
            http_requests: IntCounterVec::new(
                Opts::new("queuegate_http_requests_total", "HTTP requests answered, by listener, route and status"),
                &["listener", "route", "status"],
            )
            .expect("valid metric"),
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "queuegate_http_request_duration_seconds",
                    "HTTP request duration, by listener and route",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["listener", "route"],
            )
            .expect("valid metric"),
            produce_duration: HistogramVec::new(
                HistogramOpts::new(
                    "queuegate_produce_duration_seconds",
                    "Time from produce to broker acknowledgement, by outcome: acked, overloaded, queue_full, timeout, kafka_error",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["outcome"],
            )
            .expect("valid metric"),
            produce_errors: IntCounterVec::new(
                Opts::new("queuegate_produce_errors_total", "Joins that could not be produced, by reason: overloaded (QUEUEGATE_MAX_IN_FLIGHT reached), queue_full, timeout, kafka_error"),
                &["reason"],
            )
            .expect("valid metric"),
            produce_in_flight: IntGauge::new(
                "queuegate_produce_in_flight",
                "Joins waiting for a broker acknowledgement",
            )
            .expect("valid metric"),
            consumer_records: IntCounterVec::new(
                Opts::new(
                    "queuegate_consumer_records_total",
                    "Records the consumer handled, by outcome (appended: staged for placement; duplicate; dead_lettered; late: staged below a stamp already placed; parked: copied to <topic>.parked, counted again when applied back)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            consumer_batch_size: HistogramVec::new(
                HistogramOpts::new("queuegate_consumer_batch_records", "Records per consumer batch")
                    .buckets(vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0]),
                &[],
            )
            .expect("valid metric"),
            redis_duration: HistogramVec::new(
                HistogramOpts::new("queuegate_redis_call_duration_seconds", "Redis call duration, by operation: apply (a consumer batch), status (a fan's read from Redis), view and outcomes (the gateways' per-concert view refreshes)")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["op"],
            )
            .expect("valid metric"),
            consumer_retries: IntCounterVec::new(
                Opts::new("queuegate_consumer_retries_total", "Consumer retries after a passing failure, by stage: redis, commit"),
                &["stage"],
            )
            .expect("valid metric"),
            consumer_rebalances: IntCounterVec::new(
                Opts::new(
                    "queuegate_consumer_rebalance_events_total",
                    "Partition assignments and revocations seen by the consumer, by kind (assign, revoke, error)",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            consumer_quarantined: prometheus::IntCounter::new(
                "queuegate_consumer_quarantined_records_total",
                "Records of concerts whose Redis writes were refused for good, parked in the dead-letter topic (also counted as dead_lettered)",
            )
            .expect("valid metric"),
            consumer_carried: IntGauge::new(
                "queuegate_consumer_carried_records",
                "Records the consumer holds for its next batch while Redis is failing (at most one batch)",
            )
            .expect("valid metric"),
            consumer_parked_concerts: IntGauge::new(
                "queuegate_consumer_parked_concerts",
                "Concerts whose joins this consumer parks in <topic>.parked (their Redis shard was down) until the parked joins are applied",
            )
            .expect("valid metric"),
            consumer_held_concerts: IntGauge::new(
                "queuegate_consumer_held_concerts",
                "Concerts whose Kafka offsets this consumer holds back: applied to Redis, waiting for QUEUEGATE_REDIS_MIN_REPLICAS replicas to have them",
            )
            .expect("valid metric"),
            consumer_held_seconds: prometheus::Gauge::new(
                "queuegate_consumer_held_seconds",
                "How long the oldest of this consumer's held commits has waited for replicas (0: nothing held)",
            )
            .expect("valid metric"),
            redis_under_replicated_shards: IntGauge::new(
                "queuegate_redis_under_replicated_shards",
                "Redis shards (primaries) with fewer replicas in sync than QUEUEGATE_REDIS_MIN_REPLICAS: degraded, still serving (every 5 s and at each /readyz)",
            )
            .expect("valid metric"),
            redis_down_shards: IntGauge::new(
                "queuegate_redis_down_shards",
                "Redis Cluster shards with no live primary: their concerts wait (joins stay in Kafka or are parked)",
            )
            .expect("valid metric"),
            gate_checks: IntCounterVec::new(
                Opts::new(
                    "queuegate_gate_checks_total",
                    "Gate checks by outcome: session (live, from memory), session_checked (live, asked Redis), exchanged (an admission token became a session), direct (standby let a visitor straight in), bypass (the concert's bypass rules let it through without a session), to_room (no session), ended (a session or token that ended or was refused), unbound (an admission token brought by a browser other than the one that waited: refused, unspent), limited (429: the client's QUEUEGATE_GATE_CHECKS_PER_CLIENT spent)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            gate_sessions_started: prometheus::IntCounter::new(
                "queuegate_gate_sessions_started_total",
                "Gate sessions started (admission tokens exchanged, standby's direct entries) by this gateway",
            )
            .expect("valid metric"),
            gate_direct_refused: IntCounterVec::new(
                Opts::new(
                    "queuegate_gate_direct_refused_total",
                    "Standby visitors sent to the room instead of straight in, by why: closed (not open, not standby, queueAll, before opensAt), waiting (someone is queued), settling (someone was sent to the room under 5 s ago), full (maxActive), rate (admitPerSecond)",
                ),
                &["why"],
            )
            .expect("valid metric"),
            gate_sessions_ended: IntCounterVec::new(
                Opts::new(
                    "queuegate_gate_sessions_ended_total",
                    "Gate sessions ended, by reason: idle, max, completed, operator, revoked (counted by the process that ended them)",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            gate_sessions: IntGaugeVec::new(
                Opts::new("queuegate_gate_sessions", "Live gate sessions per concert (each holds a maxActive slot; refreshed every 5 s)"),
                &["concert"],
            )
            .expect("valid metric"),
            admissions: IntCounterVec::new(
                Opts::new("queuegate_admissions_total", "Fans admitted by this process, by mode (auto, manual)"),
                &["mode"],
            )
            .expect("valid metric"),
            events_unsealed: prometheus::IntCounter::new(
                "queuegate_events_unsealed_total",
                "Records of the events topic shaped like events but without the relay's seal: not queued for webhooks (something else writes to the topic)",
            )
            .expect("valid metric"),
            events_published: prometheus::IntCounter::new(
                "queuegate_events_published_total",
                "Events the outbox relay of this process published to QUEUEGATE_EVENTS_TOPIC (a re-publish after a crash counts again)",
            )
            .expect("valid metric"),
            events_dropped: IntCounterVec::new(
                Opts::new(
                    "queuegate_events_dropped_total",
                    "Events dropped instead of published, by reason: outbox_full (a concert's outbox at QUEUEGATE_EVENTS_OUTBOX_MAX entries while the events topic could not be written: its oldest entries were deleted), counted by the relay that took the count",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            events_outbox_entries: IntGaugeVec::new(
                Opts::new(
                    "queuegate_events_outbox_entries",
                    "Entries waiting in each concert's outbox (at most QUEUEGATE_EVENTS_OUTBOX_MAX), as this process's relay last looked",
                ),
                &["concert"],
            )
            .expect("valid metric"),
            events_topic_unwritable: IntGauge::new(
                "queuegate_events_topic_unwritable",
                "1 while this process's relay finds QUEUEGATE_EVENTS_TOPIC missing or unwritable (checked every 10 s); events wait in the outboxes meanwhile",
            )
            .expect("valid metric"),
            webhook_deliveries: IntCounterVec::new(
                Opts::new(
                    "queuegate_webhook_deliveries_total",
                    "Webhook delivery attempts of this process, by outcome (delivered, failed, gave_up; gave_up also counts deliveries given up without an attempt)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            webhook_delay: prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(
                    "queuegate_webhook_delay_seconds",
                    "From a change (its event's time) to the successful delivery of its webhook",
                )
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0]),
            )
            .expect("valid metric"),
            webhook_dropped: IntCounterVec::new(
                Opts::new(
                    "queuegate_webhook_dropped_total",
                    "Webhook deliveries this process dropped instead of queuing, by reason: full (the endpoint's queue at QUEUEGATE_WEBHOOK_MAX_PENDING or QUEUEGATE_WEBHOOK_MAX_PENDING_BYTES), suspended (the endpoint suspended)",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            webhook_pending: IntGaugeVec::new(
                Opts::new(
                    "queuegate_webhook_pending",
                    "Deliveries pending per webhook endpoint (at most QUEUEGATE_WEBHOOK_MAX_PENDING), as this process last looked",
                ),
                &["concert", "webhook"],
            )
            .expect("valid metric"),
            webhook_pending_bytes: IntGaugeVec::new(
                Opts::new(
                    "queuegate_webhook_pending_bytes",
                    "Bytes of the delivery bodies pending per webhook endpoint (at most QUEUEGATE_WEBHOOK_MAX_PENDING_BYTES), as this process last looked",
                ),
                &["concert", "webhook"],
            )
            .expect("valid metric"),
            webhook_suspended_endpoints: IntGauge::new(
                "queuegate_webhook_suspended_endpoints",
                "Webhook endpoints this process delivers for that are suspended (every attempt failed for QUEUEGATE_WEBHOOK_SUSPEND_AFTER_SECONDS) until an operator resumes them",
            )
            .expect("valid metric"),
            admission_rounds: prometheus::IntCounter::new(
                "queuegate_admission_rounds_total",
                "Admission rounds this process finished without error (one every QUEUEGATE_ADMISSION_TICK_MS)",
            )
            .expect("valid metric"),
            watermark_age: prometheus::Gauge::new(
                "queuegate_watermark_age_seconds",
                "How far the placement watermark (the slowest partition's passed stamp less QUEUEGATE_CLOCK_SKEW_MS) is behind now, as of this process's last admission round",
            )
            .expect("valid metric"),
            order_held_fans: IntGaugeVec::new(
                Opts::new(
                    "queuegate_order_held_fans",
                    "Fans accepted and applied but not yet placed, per concert: they wait for the watermark to pass their stamp",
                ),
                &["concert"],
            )
            .expect("valid metric"),
            order_placed: prometheus::IntCounter::new(
                "queuegate_order_placed_total",
                "Fans this process placed in the order of their accepted stamps",
            )
            .expect("valid metric"),
            concert_fans: IntGaugeVec::new(
                Opts::new(
                    "queuegate_concert_fans",
                    "Fans per concert by kind: waiting, active (holding a slot), admitted, abandoned, removed (refreshed every 5 s)",
                ),
                &["concert", "kind"],
            )
            .expect("valid metric"),
            lane_fans: IntGaugeVec::new(
                Opts::new(
                    "queuegate_lane_fans",
                    "Fans per concert lane by kind: waiting, admitted (refreshed every 5 s; concerts with lanes only)",
                ),
                &["concert", "lane", "kind"],
            )
            .expect("valid metric"),
            consumer_lag: IntGaugeVec::new(
                Opts::new("queuegate_consumer_lag_records", "Records on the broker this consumer has not yet taken, per assigned partition (librdkafka statistics, every 5 s)"),
                &["topic", "partition"],
            )
            .expect("valid metric"),
            kafka_queued: IntGaugeVec::new(
                Opts::new("queuegate_kafka_client_queued_messages", "Messages in a Kafka client's queues, by client role (librdkafka statistics, every 5 s)"),
                &["client"],
            )
            .expect("valid metric"),
            kafka_broker_rtt: GaugeVec::new(
                Opts::new("queuegate_kafka_broker_rtt_seconds", "Average broker round-trip time seen by a Kafka client, by client role (librdkafka statistics, every 5 s)"),
                &["client"],
            )
            .expect("valid metric"),
            registry,
        };
        // Known label values start at zero, so rates and alerts have a series before the first event.
        for outcome in ["appended", "duplicate", "dead_lettered", "late"] {
            m.consumer_records.with_label_values(&[outcome]);
        }
        for stage in ["redis", "commit"] {
            m.consumer_retries.with_label_values(&[stage]);
        }
        for reason in ["overloaded", "queue_full", "timeout", "kafka_error"] {
            m.produce_errors.with_label_values(&[reason]);
        }
        for mode in ["auto", "manual"] {
            m.admissions.with_label_values(&[mode]);
        }
        for kind in ["assign", "revoke", "error"] {
            m.consumer_rebalances.with_label_values(&[kind]);
        }
        for source in ["view", "redis"] {
            m.status_reads.with_label_values(&[source]);
        }
        for op in ["apply", "status", "view", "outcomes"] {
            m.redis_duration.with_label_values(&[op]);
        }
        for kind in ["status", "heartbeat", "reconnect"] {
            m.stream_events.with_label_values(&[kind]);
        }
        for outcome in
            ["session", "session_checked", "exchanged", "direct", "bypass", "to_room", "ended", "unbound", "limited"]
        {
            m.gate_checks.with_label_values(&[outcome]);
        }
        for why in ["closed", "waiting", "settling", "full", "rate"] {
            m.gate_direct_refused.with_label_values(&[why]);
        }
        for reason in ["idle", "max", "completed", "operator", "revoked"] {
            m.gate_sessions_ended.with_label_values(&[reason]);
        }
        for reason in ["full", "suspended"] {
            m.webhook_dropped.with_label_values(&[reason]);
        }
        m.events_dropped.with_label_values(&["outbox_full"]);
        for outcome in ["recorded", "failed"] {
            m.admin_actions.with_label_values(&[outcome]);
        }
        for reason in ["token", "role"] {
            m.admin_refused.with_label_values(&[reason]);
        }
        for outcome in ["delivered", "failed", "gave_up"] {
            m.webhook_deliveries.with_label_values(&[outcome]);
        }
        for c in m.collectors() {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// Every metric of the process, registered by [`Metrics::new`]; the metrics table of
    /// docs/reference-metrics.md is generated from them, in this order (tests/docs.rs).
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.http_requests.clone()),
            Box::new(self.http_duration.clone()),
            Box::new(self.produce_duration.clone()),
            Box::new(self.produce_errors.clone()),
            Box::new(self.produce_in_flight.clone()),
            Box::new(self.consumer_records.clone()),
            Box::new(self.consumer_batch_size.clone()),
            Box::new(self.redis_duration.clone()),
            Box::new(self.consumer_retries.clone()),
            Box::new(self.consumer_rebalances.clone()),
            Box::new(self.consumer_quarantined.clone()),
            Box::new(self.consumer_carried.clone()),
            Box::new(self.consumer_parked_concerts.clone()),
            Box::new(self.consumer_held_concerts.clone()),
            Box::new(self.consumer_held_seconds.clone()),
            Box::new(self.redis_under_replicated_shards.clone()),
            Box::new(self.redis_down_shards.clone()),
            Box::new(self.watermark_age.clone()),
            Box::new(self.order_held_fans.clone()),
            Box::new(self.order_placed.clone()),
            Box::new(self.gate_checks.clone()),
            Box::new(self.gate_sessions_started.clone()),
            Box::new(self.gate_direct_refused.clone()),
            Box::new(self.gate_sessions_ended.clone()),
            Box::new(self.gate_sessions.clone()),
            Box::new(self.admissions.clone()),
            Box::new(self.admission_rounds.clone()),
            Box::new(self.concert_fans.clone()),
            Box::new(self.lane_fans.clone()),
            Box::new(self.consumer_lag.clone()),
            Box::new(self.kafka_queued.clone()),
            Box::new(self.kafka_broker_rtt.clone()),
            Box::new(self.status_reads.clone()),
            Box::new(self.stream_events.clone()),
            Box::new(self.open_streams.clone()),
            Box::new(self.view_fans.clone()),
            Box::new(self.gate_ended_remembered.clone()),
            Box::new(self.gate_refused_remembered.clone()),
            Box::new(self.events_published.clone()),
            Box::new(self.events_unsealed.clone()),
            Box::new(self.events_dropped.clone()),
            Box::new(self.events_outbox_entries.clone()),
            Box::new(self.events_topic_unwritable.clone()),
            Box::new(self.webhook_deliveries.clone()),
            Box::new(self.webhook_delay.clone()),
            Box::new(self.webhook_dropped.clone()),
            Box::new(self.webhook_pending.clone()),
            Box::new(self.webhook_pending_bytes.clone()),
            Box::new(self.webhook_suspended_endpoints.clone()),
            Box::new(self.admin_actions.clone()),
            Box::new(self.admin_audit_trimmed.clone()),
            Box::new(self.admin_refused.clone()),
        ]
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}

impl Metrics {
    /// Feeds librdkafka's statistics (every `statistics.interval.ms`) into the gauges.
    pub fn record_kafka_stats(&self, client: &str, stats: &Statistics) {
        self.kafka_queued.with_label_values(&[client]).set(stats.msg_cnt as i64);
        let rtts: Vec<f64> =
            stats.brokers.values().filter_map(|b| b.rtt.as_ref()).map(|w| w.avg as f64 / 1e6).collect();
        if !rtts.is_empty() {
            self.kafka_broker_rtt.with_label_values(&[client]).set(rtts.iter().sum::<f64>() / rtts.len() as f64);
        }
        for (topic, t) in &stats.topics {
            for (id, p) in &t.partitions {
                // Records on the broker (up to the last stable offset: the consumer reads
                // committed records only) that this consumer has not yet taken. librdkafka's own
                // consumer_lag is measured from the consumer's committed offset, which it does
                // not know: offsets are committed through the transactional producer.
                if *id >= 0 && p.ls_offset >= 0 && p.app_offset >= 0 {
                    self.consumer_lag
                        .with_label_values(&[topic, &id.to_string()])
                        .set((p.ls_offset - p.app_offset).max(0));
                }
            }
        }
    }
}

/// Holds one unit of a gauge: incremented when made, decremented when dropped, whatever path
/// the work leaves by.
pub struct GaugeGuard<'a>(&'a IntGauge);

impl<'a> GaugeGuard<'a> {
    pub fn inc(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
