//! Outgoing webhooks: the operator's endpoints, the durable outbox of
//! deliveries, and the low-balance marks. This module alone writes
//! `webhook_endpoints`, `webhook_deliveries` and `low_balance_marks`.
//!
//! An event is put in the outbox with `emit` in the same transaction as
//! what it reports (a job's end, a redemption, a top-up, a balance falling
//! below a threshold), so it is sent if and only if that committed. A
//! worker claims due deliveries (`claim_due`, which pushes them a lease
//! ahead so a crash resends), sends them outside any transaction, and
//! `record`s the answer: delivered on 2xx, else retried with capped
//! exponential backoff up to [`DELIVERY_ATTEMPTS_MAX`]. A receiver that
//! hangs or fails costs the sender's thread, never a submit.
//!
//! Deliveries are signed per Standard Webhooks (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
//! id.timestamp.body>`). An endpoint's secret is not stored: it is derived
//! from the server's signing key (kept in memory, from the environment)
//! and the endpoint's id, so the database holds nothing that signs.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::{ReadOnly, Tx};

/// The events an endpoint may subscribe to.
pub const EVENT_TYPES: &[&str] = &[JOB_FINISHED, BALANCE_LOW, TOPUP_CREDITED, CODE_REDEEMED];
/// A job ended: succeeded, failed, canceled or expired.
pub const JOB_FINISHED: &str = "job.finished";
/// An account's available balance fell below the endpoint's threshold
/// (once per crossing).
pub const BALANCE_LOW: &str = "balance.low";
/// A top-up was paid and credited.
pub const TOPUP_CREDITED: &str = "topup.credited";
/// A redemption code was redeemed.
pub const CODE_REDEEMED: &str = "code.redeemed";
/// Endpoints at most.
pub const ENDPOINTS_MAX: usize = 32;
/// The longest endpoint URL.
pub const ENDPOINT_URL_CHARS_MAX: usize = 2_048;
/// Attempts of one delivery, at most; then it is `failed` (replayable).
pub const DELIVERY_ATTEMPTS_MAX: i64 = 12;
/// The longest wait between two attempts.
pub const RETRY_DELAY_MS_MAX: i64 = 60 * 60 * 1000;
/// Deliveries listed in one call, at most.
pub const DELIVERIES_LIST_MAX: usize = 200;
/// The shortest signing key the server accepts, in bytes.
pub const SIGNING_KEY_BYTES_MIN: usize = 32;
/// The prefix of an endpoint's id.
pub const ENDPOINT_ID_PREFIX: &str = "whe_";
/// The prefix of a delivery's id (`webhook-id`).
pub const DELIVERY_ID_PREFIX: &str = "msg_";

use crate::money::credits_json;

/// An endpoint, as the operator asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    /// Where deliveries are POSTed (http or https).
    pub url: String,
    /// The events it receives (of [`EVENT_TYPES`]).
    pub events: Vec<String>,
    /// For `balance.low`: the available balance below which an account's
    /// crossing is reported, in micro-credits.
    pub low_balance_micros: Option<i64>,
}

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id (`whe_...`).
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// The `balance.low` threshold.
    pub low_balance_micros: Option<i64>,
    /// When it was added.
    pub created_at: UnixMillis,
    /// When it was removed (it receives nothing more).
    pub removed_at: Option<UnixMillis>,
}

/// A delivery: one event for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id, sent as `webhook-id` (the receiver dedupes on it).
    pub id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// Where it goes (the endpoint's URL).
    pub url: String,
    /// The event's type.
    pub event_type: String,
    /// The JSON body sent.
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// When it is due next (while pending).
    pub next_attempt_at: UnixMillis,
    /// The receiver's last status, if it answered.
    pub last_status: Option<i64>,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: UnixMillis,
}

impl NewEndpoint {
    fn validate(&self) -> Result<()> {
        let url = self.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.len() > ENDPOINT_URL_CHARS_MAX
            || url.chars().any(char::is_whitespace)
        {
            return Err(Error::invalid(
                "url",
                format!("must be an http(s) URL of at most {ENDPOINT_URL_CHARS_MAX} characters"),
            ));
        }
        if self.events.is_empty() {
            return Err(Error::invalid("events", "name at least one event"));
        }
        if let Some(unknown) = self
            .events
            .iter()
            .find(|event| !EVENT_TYPES.contains(&event.as_str()))
        {
            return Err(Error::invalid(
                "events",
                format!("{unknown} is not one of {}", EVENT_TYPES.join(", ")),
            ));
        }
        let wants_low = self.events.iter().any(|event| event == BALANCE_LOW);
        match self.low_balance_micros {
            None if wants_low => Err(Error::invalid(
                "low_balance",
                "balance.low needs a threshold",
            )),
            Some(micros) if micros < 0 => Err(Error::invalid("low_balance", "must be 0 or more")),
            Some(_) if !wants_low => Err(Error::invalid(
                "low_balance",
                "is only for endpoints that receive balance.low",
            )),
            _ => Ok(()),
        }
    }
}

const ENDPOINT_COLUMNS: &str = "id, url, events, low_balance_micros, created_at, removed_at";

fn endpoint_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Endpoint> {
    let events: String = row.get(2)?;
    Ok(Endpoint {
        id: row.get(0)?,
        url: row.get(1)?,
        events: events.split(',').map(str::to_owned).collect(),
        low_balance_micros: row.get(3)?,
        created_at: row.get(4)?,
        removed_at: row.get(5)?,
    })
}

/// Adds an endpoint.
pub(crate) fn add(tx: &Tx<'_>, new: &NewEndpoint, now: UnixMillis) -> Result<Endpoint> {
    new.validate()?;
    let live: i64 = tx
        .prepare_cached("SELECT count(*) FROM webhook_endpoints WHERE removed_at IS NULL")?
        .query_row([], |row| row.get(0))?;
    if live >= ENDPOINTS_MAX as i64 {
        return Err(Error::invalid(
            "url",
            format!("at most {ENDPOINTS_MAX} endpoints; remove one first"),
        ));
    }
    let mut events = new.events.clone();
    events.sort();
    events.dedup();
    let endpoint = Endpoint {
        id: tx.new_id(ENDPOINT_ID_PREFIX),
        url: new.url.trim().to_owned(),
        events,
        low_balance_micros: new.low_balance_micros,
        created_at: now,
        removed_at: None,
    };
    tx.prepare_cached(
        "INSERT INTO webhook_endpoints (id, url, events, low_balance_micros, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        endpoint.id,
        endpoint.url,
        endpoint.events.join(","),
        endpoint.low_balance_micros,
        endpoint.created_at
    ])?;
    Ok(endpoint)
}

/// Removes an endpoint: it receives nothing more; its pending deliveries
/// are dropped as `failed`.
pub(crate) fn remove(tx: &Tx<'_>, endpoint_id: &str, now: UnixMillis) -> Result<Endpoint> {
    get(tx, endpoint_id)?;
    tx.prepare_cached(
        "UPDATE webhook_endpoints SET removed_at = ?2 WHERE id = ?1 AND removed_at IS NULL",
    )?
    .execute(params![endpoint_id, now])?;
    tx.prepare_cached(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint removed'
          WHERE endpoint_id = ?1 AND status = 'pending'",
    )?
    .execute([endpoint_id])?;
    get(tx, endpoint_id)
}

/// An endpoint by id, or `not_found`.
pub(crate) fn get(conn: &ReadOnly<'_>, endpoint_id: &str) -> Result<Endpoint> {
    conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?1"
    ))?
    .query_row([endpoint_id], endpoint_from_row)
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "webhook endpoint",
        id: endpoint_id.to_owned(),
    })
}

/// Every endpoint, live ones first.
pub(crate) fn list(conn: &ReadOnly<'_>) -> Result<Vec<Endpoint>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
          ORDER BY removed_at IS NOT NULL, created_at, id LIMIT 1000"
    ))?;
    let rows = stmt.query_map([], endpoint_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The live endpoints that receive `event_type`.
fn subscribers(conn: &ReadOnly<'_>, event_type: &str) -> Result<Vec<Endpoint>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
          WHERE removed_at IS NULL AND instr(',' || events || ',', ',' || ?1 || ',') > 0"
    ))?;
    let rows = stmt.query_map([event_type], endpoint_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn insert_delivery(
    tx: &Tx<'_>,
    endpoint_id: &str,
    event_type: &str,
    data: &Value,
    now: UnixMillis,
) -> Result<()> {
    let payload = json!({
        "type": event_type,
        "timestamp": crate::clock::format_rfc3339(now),
        "data": data,
    })
    .to_string();
    tx.prepare_cached(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_type, payload, status,
                                         next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
    )?
    .execute(params![
        tx.new_sortable_id(DELIVERY_ID_PREFIX, now),
        endpoint_id,
        event_type,
        payload,
        now
    ])?;
    Ok(())
}

/// Puts `event_type` with `data` in the outbox of every live endpoint that
/// receives it, in the caller's transaction.
pub(crate) fn emit(tx: &Tx<'_>, event_type: &str, data: &Value, now: UnixMillis) -> Result<()> {
    debug_assert!(EVENT_TYPES.contains(&event_type), "an unknown event type");
    for endpoint in subscribers(tx, event_type)? {
        insert_delivery(tx, &endpoint.id, event_type, data, now)?;
    }
    Ok(())
}

/// An account's available balance changed to `available_micros`: each
/// `balance.low` endpoint hears of a fall below its threshold once, until
/// the balance is back at or above it.
pub(crate) fn balance_changed(
    tx: &Tx<'_>,
    account_id: &str,
    available_micros: i64,
    now: UnixMillis,
) -> Result<()> {
    for endpoint in subscribers(tx, BALANCE_LOW)? {
        let Some(threshold) = endpoint.low_balance_micros else {
            continue;
        };
        if available_micros < threshold {
            let marked = tx
                .prepare_cached(
                    "INSERT INTO low_balance_marks (endpoint_id, account_id) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                )?
                .execute([&endpoint.id, account_id])?;
            if marked == 1 {
                let data = json!({
                    "account_id": account_id,
                    "available": credits_json(available_micros),
                    "threshold": credits_json(threshold),
                });
                insert_delivery(tx, &endpoint.id, BALANCE_LOW, &data, now)?;
            }
        } else {
            tx.prepare_cached(
                "DELETE FROM low_balance_marks WHERE endpoint_id = ?1 AND account_id = ?2",
            )?
            .execute([&endpoint.id, account_id])?;
        }
    }
    Ok(())
}

/// Whether any live endpoint receives `balance.low` (so a caller can skip
/// reading a balance for nothing).
pub(crate) fn wants_balances(conn: &ReadOnly<'_>) -> Result<bool> {
    Ok(!subscribers(conn, BALANCE_LOW)?.is_empty())
}

const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, e.url, d.event_type, d.payload, d.status, \
     d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.created_at";

fn delivery_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: row.get(0)?,
        endpoint_id: row.get(1)?,
        url: row.get(2)?,
        event_type: row.get(3)?,
        payload: row.get(4)?,
        status: row.get(5)?,
        attempts: row.get(6)?,
        next_attempt_at: row.get(7)?,
        last_status: row.get(8)?,
        last_error: row.get(9)?,
        created_at: row.get(10)?,
    })
}

/// Takes up to `limit` due deliveries and pushes each `lease_ms` ahead
/// (counting the attempt), so a crash mid-send resends it later.
pub(crate) fn claim_due(
    tx: &Tx<'_>,
    now: UnixMillis,
    limit: usize,
    lease_ms: i64,
) -> Result<Vec<Delivery>> {
    let due: Vec<Delivery> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
               JOIN webhook_endpoints e ON e.id = d.endpoint_id
              WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
              ORDER BY d.next_attempt_at, d.id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now, limit as i64], delivery_from_row)?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for delivery in &due {
        tx.prepare_cached(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?2
              WHERE id = ?1",
        )?
        .execute(params![delivery.id, now + lease_ms])?;
    }
    Ok(due
        .into_iter()
        .map(|delivery| Delivery {
            attempts: delivery.attempts + 1,
            ..delivery
        })
        .collect())
}

/// The wait after failed attempt number `attempts` (1 for the first):
/// `first_ms`, doubling, at most [`RETRY_DELAY_MS_MAX`].
pub fn retry_delay_ms(attempts: i64, first_ms: i64) -> i64 {
    let doublings = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
    first_ms
        .saturating_mul(1i64 << doublings)
        .min(RETRY_DELAY_MS_MAX)
}

/// Records a send's answer: delivered on a 2xx status; otherwise due
/// again after the backoff, or `failed` once out of attempts.
pub(crate) fn record(
    tx: &Tx<'_>,
    delivery: &Delivery,
    answer: &std::result::Result<u16, String>,
    now: UnixMillis,
    first_retry_ms: i64,
) -> Result<()> {
    let (status, error) = match answer {
        Ok(status) => (Some(i64::from(*status)), None),
        Err(error) => (None, Some(error.chars().take(300).collect::<String>())),
    };
    let delivered = status.is_some_and(|status| (200..300).contains(&status));
    let (state, next) = if delivered {
        ("delivered", now)
    } else if delivery.attempts >= DELIVERY_ATTEMPTS_MAX {
        ("failed", now)
    } else {
        (
            "pending",
            now + retry_delay_ms(delivery.attempts, first_retry_ms),
        )
    };
    let error = if delivered {
        None
    } else {
        error.or_else(|| status.map(|status| format!("answered {status}")))
    };
    tx.prepare_cached(
        "UPDATE webhook_deliveries
            SET status = ?2, next_attempt_at = ?3, last_status = ?4, last_error = ?5,
                delivered_at = CASE WHEN ?2 = 'delivered' THEN ?6 ELSE delivered_at END
          WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(params![delivery.id, state, next, status, error, now])?;
    Ok(())
}

/// Sends a delivery again from its first attempt (any status), now.
pub(crate) fn replay(tx: &Tx<'_>, delivery_id: &str, now: UnixMillis) -> Result<Delivery> {
    let changed = tx
        .prepare_cached(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2
              WHERE id = ?1
                AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE removed_at IS NULL)",
        )?
        .execute(params![delivery_id, now])?;
    let delivery = delivery(tx, delivery_id)?;
    if changed == 0 {
        return Err(Error::invalid(
            "delivery",
            "its endpoint was removed; add it again to receive events",
        ));
    }
    Ok(delivery)
}

/// A delivery by id, or `not_found`.
pub(crate) fn delivery(conn: &ReadOnly<'_>, delivery_id: &str) -> Result<Delivery> {
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
           JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = ?1"
    ))?
    .query_row([delivery_id], delivery_from_row)
    .optional()?
    .ok_or_else(|| Error::NotFound {
        what: "webhook delivery",
        id: delivery_id.to_owned(),
    })
}

/// Deliveries, newest first, optionally of one status (at most
/// [`DELIVERIES_LIST_MAX`]).
pub(crate) fn deliveries(conn: &ReadOnly<'_>, status: Option<&str>) -> Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
           JOIN webhook_endpoints e ON e.id = d.endpoint_id
          WHERE ?1 IS NULL OR d.status = ?1
          ORDER BY d.created_at DESC, d.id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(
        params![status, DELIVERIES_LIST_MAX as i64],
        delivery_from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// An endpoint's signing secret, `whsec_<base64 key>`, derived from the
/// server's signing key and the endpoint's id.
pub fn endpoint_secret(signing_key: &Secret, endpoint_id: &str) -> String {
    let key = endpoint_key(signing_key, endpoint_id);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn endpoint_key(signing_key: &Secret, endpoint_id: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_key.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"creditgate webhook endpoint ");
    mac.update(endpoint_id.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The Standard Webhooks headers of `delivery` sent at `now`.
pub fn signed_headers(
    signing_key: &Secret,
    delivery: &Delivery,
    now: UnixMillis,
) -> Vec<(String, String)> {
    let timestamp = now.div_euclid(1000).to_string();
    let key = endpoint_key(signing_key, &delivery.endpoint_id);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(format!("{}.{timestamp}.", delivery.id).as_bytes());
    mac.update(delivery.payload.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("webhook-id".into(), delivery.id.clone()),
        ("webhook-timestamp".into(), timestamp),
        ("webhook-signature".into(), format!("v1,{signature}")),
        ("content-type".into(), "application/json".into()),
    ]
}

/// How deliveries leave: a trait, so tests and embedders can put their
/// own behind it. `Ok(status)` for any HTTP answer, `Err` for none.
pub trait WebhookSender: Send + Sync + std::fmt::Debug {
    /// POSTs `body` with `headers` to `url`.
    fn send(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> std::result::Result<u16, String>;
}

/// Sends deliveries over HTTP (ureq): a short timeout, no redirects, the
/// answer's body ignored.
#[cfg(feature = "http")]
#[derive(Debug)]
pub struct HttpWebhookSender {
    http: ureq::Agent,
}

#[cfg(feature = "http")]
impl HttpWebhookSender {
    /// A sender whose every send takes at most `timeout`.
    pub fn new(timeout: std::time::Duration) -> HttpWebhookSender {
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("creditgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpWebhookSender { http }
    }
}

#[cfg(feature = "http")]
impl WebhookSender for HttpWebhookSender {
    fn send(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> std::result::Result<u16, String> {
        let mut request = self.http.post(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.send(body.as_bytes()) {
            Ok(response) => Ok(response.status().as_u16()),
            Err(ureq::Error::Timeout(_)) => Err("timed out".into()),
            Err(ureq::Error::HostNotFound) => Err("the host was not found".into()),
            Err(ureq::Error::ConnectionFailed) => Err("the connection failed".into()),
            Err(_) => Err("a transport error".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_an_hour() {
        assert_eq!(retry_delay_ms(1, 10_000), 10_000);
        assert_eq!(retry_delay_ms(2, 10_000), 20_000);
        assert_eq!(retry_delay_ms(4, 10_000), 80_000);
        assert_eq!(retry_delay_ms(40, 10_000), RETRY_DELAY_MS_MAX);
    }

    #[test]
    fn a_delivery_is_signed_as_standard_webhooks_says() {
        let key = Secret::new("k".repeat(32));
        let delivery = Delivery {
            id: "msg_1".into(),
            endpoint_id: "whe_1".into(),
            url: "http://x.test".into(),
            event_type: JOB_FINISHED.into(),
            payload: r#"{"type":"job.finished"}"#.into(),
            status: "pending".into(),
            attempts: 1,
            next_attempt_at: 0,
            last_status: None,
            last_error: None,
            created_at: 0,
        };
        let headers = signed_headers(&key, &delivery, 1_700_000_000_123);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .expect(name)
        };
        assert_eq!(get("webhook-timestamp"), "1700000000");
        // Recompute from the secret the operator is shown.
        let secret = endpoint_secret(&key, "whe_1");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").expect("prefix"))
            .expect("base64");
        let mut mac = Hmac::<Sha256>::new_from_slice(&raw).expect("key");
        mac.update(b"msg_1.1700000000.{\"type\":\"job.finished\"}");
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(get("webhook-signature"), format!("v1,{expected}"));
        // Another endpoint's secret differs.
        assert_ne!(endpoint_secret(&key, "whe_2"), secret);
    }
}
