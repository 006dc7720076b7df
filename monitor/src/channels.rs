//! Notification channels (log, console, file, webhook JSON, Slack incoming webhook, SMTP
//! email) and delivery with retries and exponential backoff.
//!
//! Delivery blocks (HTTP and SMTP clients are synchronous): the daemon calls it from its
//! monitor thread, never from a shard.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alerts::{AlertEvent, EventKind, Level};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel {channel}: {reason}")]
    Delivery { channel: String, reason: String },
}

/// One configured channel (`[[monitor.alerts.channels]]` with `kind = "webhook"` etc.).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ChannelKind {
    Log,
    Console,
    File {
        path: PathBuf,
    },
    Webhook {
        url: String,
    },
    Slack {
        url: String,
    },
    Email {
        smtp_host: String,
        smtp_port: u16,
        from: String,
        to: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub name: String,
    #[serde(flatten)]
    pub kind: ChannelKind,
    /// Events below this level are not sent here (e.g. email only for critical, so that an
    /// escalation reaches it).
    #[serde(default = "default_min_level")]
    pub min_level: Level,
}

fn default_min_level() -> Level {
    Level::Info
}

/// Retries with exponential backoff: `backoff_initial_ms`, doubled up to `backoff_max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub attempts_max: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 4,
            backoff_initial_ms: 200,
            backoff_max_ms: 5_000,
            timeout_ms: 5_000,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (1-based; none before the first).
    pub fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let shift = (attempt - 2).min(20);
        let ms = self
            .backoff_initial_ms
            .saturating_mul(1 << shift)
            .min(self.backoff_max_ms);
        Duration::from_millis(ms)
    }
}

/// The outcome of delivering one event to one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub channel: String,
    pub attempts: u32,
    pub error: Option<String>,
}

fn kind_word(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Fired => "FIRING",
        EventKind::Repeated => "STILL FIRING",
        EventKind::Escalated => "ESCALATED",
        EventKind::Resolved => "RESOLVED",
        EventKind::Acknowledged => "ACKNOWLEDGED",
        EventKind::Silenced => "SILENCED",
    }
}

/// One line of text describing the event (log, console, file, Slack, email subject).
pub fn headline(event: &AlertEvent) -> String {
    format!(
        "[{}] {:?} {}: {} = {} (threshold {}) {}",
        kind_word(event.kind),
        event.level,
        event.rule,
        event.metric,
        event.value,
        event.threshold,
        event.message
    )
}

/// The webhook body: the event itself plus a source tag.
pub fn webhook_payload(event: &AlertEvent) -> serde_json::Value {
    serde_json::json!({ "source": "mantisdb", "alert": event })
}

/// Slack's incoming-webhook format: `text` plus one coloured attachment.
pub fn slack_payload(event: &AlertEvent) -> serde_json::Value {
    let color = match (event.kind, event.level) {
        (EventKind::Resolved, _) => "good",
        (_, Level::Critical) => "danger",
        (_, Level::Warning) => "warning",
        (_, Level::Info) => "#439FE0",
    };
    serde_json::json!({
        "text": headline(event),
        "attachments": [{
            "color": color,
            "fields": [
                { "title": "rule", "value": event.rule, "short": true },
                { "title": "level", "value": format!("{:?}", event.level), "short": true },
                { "title": "value", "value": event.value.to_string(), "short": true },
            ],
        }],
    })
}

fn send_once(channel: &Channel, event: &AlertEvent, timeout: Duration) -> Result<(), String> {
    match &channel.kind {
        ChannelKind::Log => {
            tracing::warn!(target: "alerts", rule = %event.rule, level = ?event.level, kind = ?event.kind, value = event.value, "{}", headline(event));
            Ok(())
        }
        ChannelKind::Console => {
            eprintln!("{}", headline(event));
            Ok(())
        }
        ChannelKind::File { path } => {
            let line = serde_json::to_string(event).map_err(|e| e.to_string())?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"))
                .map_err(|e| format!("{}: {e}", path.display()))
        }
        ChannelKind::Webhook { url } => post_json(url, &webhook_payload(event), timeout),
        ChannelKind::Slack { url } => post_json(url, &slack_payload(event), timeout),
        ChannelKind::Email {
            smtp_host,
            smtp_port,
            from,
            to,
        } => send_email(smtp_host, *smtp_port, from, to, event, timeout),
    }
}

fn post_json(url: &str, body: &serde_json::Value, timeout: Duration) -> Result<(), String> {
    ureq::post(url)
        .timeout(timeout)
        .send_json(body)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn send_email(
    host: &str,
    port: u16,
    from: &str,
    to: &[String],
    event: &AlertEvent,
    timeout: Duration,
) -> Result<(), String> {
    use lettre::{Message, SmtpTransport, Transport};
    let mut builder = Message::builder()
        .from(from.parse().map_err(|e| format!("from {from:?}: {e}"))?)
        .subject(headline(event));
    for rcpt in to {
        builder = builder.to(rcpt.parse().map_err(|e| format!("to {rcpt:?}: {e}"))?);
    }
    let body = serde_json::to_string_pretty(event).map_err(|e| e.to_string())?;
    let message = builder
        .body(format!("{}\n\n{body}\n", headline(event)))
        .map_err(|e| e.to_string())?;
    // Plain SMTP to a relay the operator names (TLS is the relay's job here: lettre is built
    // without a TLS backend to keep OpenSSL out of the appliance).
    let transport = SmtpTransport::builder_dangerous(host)
        .port(port)
        .timeout(Some(timeout))
        .build();
    transport
        .send(&message)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Delivers one event to every channel whose `min_level` it reaches, retrying each failed
/// channel with backoff; one channel's failure never stops the others.
pub fn deliver(channels: &[Channel], policy: &RetryPolicy, event: &AlertEvent) -> Vec<Delivery> {
    assert!(policy.attempts_max > 0, "attempts_max must be positive");
    let timeout = Duration::from_millis(policy.timeout_ms);
    let mut out = Vec::new();
    for channel in channels {
        if event.level < channel.min_level {
            continue;
        }
        let mut delivery = Delivery {
            channel: channel.name.clone(),
            attempts: 0,
            error: None,
        };
        for attempt in 1..=policy.attempts_max {
            // Backoff between retries of a failed remote: not waiting for an event here.
            std::thread::sleep(policy.backoff(attempt));
            delivery.attempts = attempt;
            match send_once(channel, event, timeout) {
                Ok(()) => {
                    delivery.error = None;
                    break;
                }
                Err(reason) => delivery.error = Some(reason),
            }
        }
        if let Some(reason) = &delivery.error {
            tracing::error!(target: "alerts", channel = %channel.name, attempts = delivery.attempts, %reason, "alert delivery failed");
        }
        out.push(delivery);
    }
    out
}

impl Delivery {
    pub fn into_result(self) -> Result<u32, ChannelError> {
        match self.error {
            None => Ok(self.attempts),
            Some(reason) => Err(ChannelError::Delivery {
                channel: self.channel,
                reason,
            }),
        }
    }
}
