//! Delivering the outbox: every server runs a notifier that claims due deliveries one at a time and
//! posts them to their webhooks.
//!
//! Each request carries the body the alert change froze in the outbox, an `Idempotency-Key` header
//! (the same on every attempt), and `X-Slope-Signature: t=<unix seconds>,v1=<hex>`, the HMAC-SHA256 of
//! `"<t>.<body>"` under the contact point's secret, so a receiver can check that Slope sent it and
//! refuse an old one replayed. A 2xx answer delivers it; a network error, a timeout, 408, 429 or a 5xx
//! is retried with doubling waits up to [`MAX_DELIVERY_ATTEMPTS`] attempts; any other answer is the
//! receiver refusing it, and fails it at once. Every attempt is logged with its status code.
//!
//! The host is resolved before each attempt and the request goes to the resolved address, never
//! re-resolved, so a name cannot resolve to a public address for the check and an internal one for the
//! request; redirects are not followed, for the same reason.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use slope_domain::*;
use slope_store::{AttemptOutcome, ClaimedDelivery, Store};

use crate::Result;

/// How long one attempt may take before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// HMAC-SHA256 (RFC 2104) of `message` under `key`, as lowercase hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner);
    outer.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The `X-Slope-Signature` header's value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={t},v1={}", hmac_sha256_hex(secret.as_bytes(), &signed))
}

/// The notifier's settings.
#[derive(Debug, Clone, Copy)]
pub struct NotifierSettings {
    /// The wait before the second attempt; each later one waits twice as long (at most an hour).
    pub retry_base_seconds: i64,
    /// How long a claimed delivery is this server's before another may retry it.
    pub lease: chrono::Duration,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        NotifierSettings { retry_base_seconds: 30, lease: chrono::Duration::seconds(60) }
    }
}

/// Delivers the outbox.
#[derive(Clone, Debug)]
pub struct Notifier {
    store: Store,
    settings: NotifierSettings,
    worker: String,
}

impl Notifier {
    pub fn new(store: Store, settings: NotifierSettings, worker: String) -> Self {
        Notifier { store, settings, worker }
    }

    /// Attempts every due delivery once (at most `limit`); returns how many were attempted.
    pub async fn deliver_due(&self, limit: usize) -> Result<usize> {
        let mut attempted = 0;
        if !self.store.delivery_due(Utc::now()).await? {
            return Ok(0);
        }
        while attempted < limit {
            let now = Utc::now();
            let Some(claimed) = self.store.claim_delivery(&self.worker, self.settings.lease, now).await? else {
                break;
            };
            let outcome = self.attempt(&claimed).await;
            let finished = Utc::now();
            match &outcome.error {
                None => tracing::info!(
                    delivery = claimed.delivery.id,
                    status = outcome.status_code,
                    "notification delivered"
                ),
                Some(error) => tracing::warn!(
                    delivery = claimed.delivery.id,
                    attempt = claimed.delivery.attempts,
                    status = outcome.status_code,
                    error,
                    retry_at = ?outcome.retry_at,
                    "notification not delivered"
                ),
            }
            if !self.store.finish_delivery_attempt(&claimed.delivery, &self.worker, &outcome, finished).await? {
                tracing::warn!(delivery = claimed.delivery.id, "the delivery's lease ran out before its attempt ended");
            }
            attempted += 1;
        }
        Ok(attempted)
    }

    /// One attempt; never fails: what went wrong is the outcome.
    async fn attempt(&self, claimed: &ClaimedDelivery) -> AttemptOutcome {
        let started = Instant::now();
        let attempt = claimed.delivery.attempts;
        let retry_at = |now: DateTime<Utc>| {
            (attempt < MAX_DELIVERY_ATTEMPTS).then(|| now + retry_delay(self.settings.retry_base_seconds, attempt))
        };
        let elapsed = |started: Instant| started.elapsed().as_millis().min(i64::MAX as u128) as i64;
        let url = &claimed.contact_point.url;
        // The address is resolved here and pinned for the request.
        let addresses: Vec<SocketAddr> = match tokio::net::lookup_host((url.host(), url.port())).await {
            Ok(found) => found.collect(),
            Err(e) => {
                return AttemptOutcome {
                    status_code: None,
                    error: Some(format!("cannot resolve {}: {e}", url.host())),
                    duration_ms: elapsed(started),
                    retry_at: retry_at(Utc::now()),
                    delivered: false,
                };
            }
        };
        let Some(address) = addresses.first().copied() else {
            return AttemptOutcome {
                status_code: None,
                error: Some(format!("{} resolves to no address", url.host())),
                duration_ms: elapsed(started),
                retry_at: retry_at(Utc::now()),
                delivered: false,
            };
        };
        if !claimed.allow_internal
            && let Some(internal) = addresses.iter().find(|a| is_internal(a.ip()))
        {
            // A policy refusal: retrying cannot change it, so the delivery fails now with the reason.
            return AttemptOutcome {
                status_code: None,
                error: Some(format!(
                    "refused: {} resolves to {}, an address in the server's own networks, which this organisation does not allow",
                    url.host(),
                    internal.ip()
                )),
                duration_ms: elapsed(started),
                retry_at: None,
                delivered: false,
            };
        }
        let body = match claimed.contact_point.format {
            WebhookFormat::Json => serde_json::to_vec(&claimed.notification),
            WebhookFormat::Slack => serde_json::to_vec(&SlackBody { text: claimed.notification.headline() }),
        };
        let body = match body {
            Ok(body) => body,
            Err(e) => {
                return AttemptOutcome {
                    status_code: None,
                    error: Some(format!("cannot encode the notification: {e}")),
                    duration_ms: elapsed(started),
                    retry_at: None,
                    delivered: false,
                };
            }
        };
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(url.host(), address)
            .build();
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                return AttemptOutcome {
                    status_code: None,
                    error: Some(format!("cannot build the HTTP client: {e}")),
                    duration_ms: elapsed(started),
                    retry_at: retry_at(Utc::now()),
                    delivered: false,
                };
            }
        };
        let t = Utc::now().timestamp();
        let sent = client
            .post(url.as_str())
            .header("Content-Type", "application/json")
            .header("User-Agent", "Slope-Webhooks/1")
            .header("Idempotency-Key", &claimed.notification.idempotency_key)
            .header("X-Slope-Delivery", claimed.delivery.id.to_string())
            .header("X-Slope-Signature", signature(&claimed.secret, t, &body))
            .body(body)
            .send()
            .await;
        let now = Utc::now();
        match sent {
            Ok(response) => {
                let status = response.status();
                let code = Some(i64::from(status.as_u16()));
                if status.is_success() {
                    AttemptOutcome {
                        status_code: code,
                        error: None,
                        duration_ms: elapsed(started),
                        retry_at: None,
                        delivered: true,
                    }
                } else {
                    let transient = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                    AttemptOutcome {
                        status_code: code,
                        error: Some(format!("the receiver answered {status}")),
                        duration_ms: elapsed(started),
                        retry_at: if transient { retry_at(now) } else { None },
                        delivered: false,
                    }
                }
            }
            Err(e) => AttemptOutcome {
                status_code: None,
                error: Some(if e.is_timeout() {
                    format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs())
                } else {
                    format!("cannot reach {}: {e}", url.host())
                }),
                duration_ms: elapsed(started),
                retry_at: retry_at(now),
                delivered: false,
            },
        }
    }

    /// Delivers what is due every `every` for as long as the process runs.
    pub fn spawn(self, every: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            loop {
                tick.tick().await;
                if let Err(e) = self.deliver_due(100).await {
                    tracing::warn!(error = %e, "delivering notifications failed");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hmac_sha256_hex(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let a = signature("whsec_x", 1_700_000_000, b"{}");
        assert!(a.starts_with("t=1700000000,v1="), "{a}");
        assert_ne!(a, signature("whsec_x", 1_700_000_001, b"{}"));
        assert_ne!(a, signature("whsec_x", 1_700_000_000, b"{ }"));
    }
}
