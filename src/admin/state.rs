//! The admin listener's state: everything its handlers share. It imports no handler, so every
//! handler of the listener can take it.

use std::sync::Arc;

use super::access;
use crate::admission::AdmissionKeys;
use crate::concerts::ConcertCache;
use crate::kafka::KafkaProbe;
use crate::metrics::Metrics;
use crate::store::QueueStore;
use crate::supervisor::Health;

/// Everything the admin handlers share.
pub struct Admin {
    pub store: QueueStore,
    pub cache: ConcertCache,
    pub metrics: Metrics,
    /// Signs the admission tokens manual admission hands out.
    pub keys: AdmissionKeys,
    /// The admin tokens and who each one is (none configured under --insecure-dev: open).
    pub(super) tokens: access::AdminTokens,
    /// Actions each concert's audit list keeps (`QUEUEGATE_ADMIN_AUDIT_KEPT`).
    pub(super) audit_kept: u64,
    /// Asks Kafka for metadata, for readiness.
    pub(super) kafka: KafkaProbe,
    /// Draining and failed tasks: /readyz answers 503 on either.
    pub(super) health: Arc<Health>,
    /// Where webhooks may point (`QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`): checked at registration.
    pub(super) egress: crate::events::egress::EgressPolicy,
    /// Encrypts the webhook secrets Redis holds.
    pub(super) at_rest: crate::events::at_rest::SecretBox,
    /// Hashes lane codes as the gateways look them up.
    pub(super) codes: crate::store::CodeKey,
}

impl Admin {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: QueueStore,
        cache: ConcertCache,
        metrics: Metrics,
        keys: AdmissionKeys,
        tokens: access::AdminTokens,
        kafka: KafkaProbe,
        health: Arc<Health>,
        at_rest: crate::events::at_rest::SecretBox,
        codes: crate::store::CodeKey,
    ) -> Self {
        Admin {
            at_rest,
            codes,
            store,
            cache,
            metrics,
            keys,
            tokens,
            audit_kept: crate::config::ADMIN_AUDIT_KEPT_DEFAULT,
            kafka,
            health,
            egress: Default::default(),
        }
    }

    /// The networks webhooks may point to besides public ones (`QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`).
    pub fn with_webhook_egress(mut self, egress: crate::events::egress::EgressPolicy) -> Self {
        self.egress = egress;
        self
    }

    /// Actions each concert's audit list keeps (`QUEUEGATE_ADMIN_AUDIT_KEPT`).
    pub fn with_audit_kept(mut self, kept: u64) -> Self {
        self.audit_kept = kept;
        self
    }
}
