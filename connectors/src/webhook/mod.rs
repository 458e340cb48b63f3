//! `CREATE TABLE t (...) WITH (connector = 'webhook', ...)`: a table whose rows are sent to
//! OpenClaw at `POST /v1/webhook/<t>` (by GitHub, Stripe-style senders, any service), rather
//! than read. Nothing reads: the server's HTTP front hands each request to the table's
//! [`Receiver`], which checks its signature, and then writes its rows as ingest does (bodies
//! that do not decode go to ingest's dead-letter table `<t>_dlq`, created on first use).
//!
//! Options (all optional):
//! - `webhook.secret`: the shared secret; with it, each request must carry an HMAC of its body
//!   under the secret in `webhook.signature.header`, or it is refused (401) and writes nothing.
//! - `webhook.signature.header` (default `X-Hub-Signature-256`, GitHub's),
//!   `webhook.signature.algorithm` (`sha256`, default, or `sha512`),
//!   `webhook.signature.encoding` (`hex`, default, or `base64`),
//!   `webhook.signature.prefix` (default `sha256=` for GitHub's header, else empty): the header's
//!   value is the prefix followed by the encoded HMAC.
//! - `webhook.idempotency.header`: a header whose value names a delivery (GitHub's
//!   `X-GitHub-Delivery`); a redelivery with the same value writes nothing again.
//! - `webhook.body = 'json' | 'text'`: `json` (default) maps a JSON object (or an array of them,
//!   or NDJSON) to the table's columns; `text` keeps the whole body as one row of the table's
//!   only column (of a text type), for payloads kept as they came.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use hmac::{KeyInit, Mac};
use openclaw_engine::source::SourceReader;

use crate::{Connector, ConnectorError, Options, ReaderContext, Receiver};

pub struct WebhookConnector;

/// GitHub's signature header, the default.
const DEFAULT_SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// Longest secret accepted (HMAC keys longer than a block are hashed anyway).
const MAX_SECRET_BYTES: usize = 1024;

const OPTIONS: &[&str] = &[
    "connector",
    "webhook.secret",
    "webhook.signature.header",
    "webhook.signature.algorithm",
    "webhook.signature.encoding",
    "webhook.signature.prefix",
    "webhook.idempotency.header",
    "webhook.body",
];

impl Connector for WebhookConnector {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn validate(&self, declared: &SchemaRef, options: &Options) -> Result<SchemaRef, ConnectorError> {
        if declared.fields().is_empty() {
            return Err(ConnectorError::new("a webhook table needs its columns declared")
                .with_hint("e.g. CREATE TABLE hooks (body VARCHAR) WITH (connector = 'webhook', webhook.body = 'text')"));
        }
        WebhookReceiver::from_options(declared, options)?;
        Ok(declared.clone())
    }

    fn reader(&self, _schema: &SchemaRef, _options: &Options, _context: ReaderContext) -> Result<Box<dyn SourceReader>, ConnectorError> {
        Err(ConnectorError::new("a webhook receives its rows over HTTP; it cannot be read as a source")
            .with_hint("CREATE TABLE ... WITH (connector = 'webhook'), then POST to /v1/webhook/<table>"))
    }

    fn receiver(&self, schema: &SchemaRef, options: &Options) -> Result<Option<Arc<dyn Receiver>>, ConnectorError> {
        Ok(Some(Arc::new(WebhookReceiver::from_options(schema, options)?)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Algorithm {
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Hex,
    Base64,
}

/// A webhook table's checks, from its options.
#[derive(Debug)]
pub struct WebhookReceiver {
    secret: Option<Vec<u8>>,
    /// Lowercased.
    signature_header: String,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: String,
    /// Lowercased.
    idempotency_header: Option<String>,
    body_is_text: bool,
}

impl WebhookReceiver {
    fn from_options(schema: &SchemaRef, options: &Options) -> Result<Self, ConnectorError> {
        if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(ConnectorError::new(format!("unknown webhook option \"{unknown}\"")).with_hint(format!("webhook options: {}", OPTIONS[1..].join(", "))));
        }
        let get = |key: &str| options.get(key).map(|v| v.trim().to_string());
        let secret = get("webhook.secret").map(String::into_bytes);
        if secret.as_ref().is_some_and(|s| s.is_empty() || s.len() > MAX_SECRET_BYTES) {
            return Err(ConnectorError::new(format!("webhook.secret must have 1 to {MAX_SECRET_BYTES} bytes")));
        }
        let signature_header = get("webhook.signature.header").unwrap_or_else(|| DEFAULT_SIGNATURE_HEADER.into()).to_ascii_lowercase();
        let algorithm = match get("webhook.signature.algorithm").unwrap_or_else(|| "sha256".into()).to_ascii_lowercase().as_str() {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(ConnectorError::new(format!("unknown webhook.signature.algorithm \"{other}\"")).with_hint("sha256 or sha512")),
        };
        let encoding = match get("webhook.signature.encoding").unwrap_or_else(|| "hex".into()).to_ascii_lowercase().as_str() {
            "hex" => Encoding::Hex,
            "base64" => Encoding::Base64,
            other => return Err(ConnectorError::new(format!("unknown webhook.signature.encoding \"{other}\"")).with_hint("hex or base64")),
        };
        // GitHub's header carries "sha256=" before the hex digest; other headers nothing.
        let prefix = options.get("webhook.signature.prefix").cloned().unwrap_or_else(|| match signature_header == DEFAULT_SIGNATURE_HEADER {
            true => "sha256=".into(),
            false => String::new(),
        });
        let body_is_text = match get("webhook.body").unwrap_or_else(|| "json".into()).to_ascii_lowercase().as_str() {
            "json" => false,
            "text" => true,
            other => return Err(ConnectorError::new(format!("unknown webhook.body \"{other}\"")).with_hint("json (a JSON object's fields are columns) or text (the whole body in one column)")),
        };
        if body_is_text && !(schema.fields().len() == 1 && matches!(schema.field(0).data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)) {
            return Err(ConnectorError::new("webhook.body = 'text' needs a table of one text column").with_hint("e.g. CREATE TABLE hooks (body VARCHAR) WITH (...)"));
        }
        let idempotency_header = get("webhook.idempotency.header").map(|h| h.to_ascii_lowercase());
        Ok(Self { secret, signature_header, algorithm, encoding, prefix, idempotency_header, body_is_text })
    }

    /// The header value a sender computes for `body`.
    fn signature(&self, secret: &[u8], body: &[u8]) -> String {
        let digest = match self.algorithm {
            Algorithm::Sha256 => mac::<hmac::Hmac<sha2::Sha256>>(secret, body),
            Algorithm::Sha512 => mac::<hmac::Hmac<sha2::Sha512>>(secret, body),
        };
        let encoded = match self.encoding {
            Encoding::Hex => digest.iter().map(|b| format!("{b:02x}")).collect(),
            Encoding::Base64 => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(&digest)
            }
        };
        format!("{}{encoded}", self.prefix)
    }
}

fn mac<M: Mac + KeyInit>(secret: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Compares in time that depends on the lengths only, so that a sender cannot guess a
/// signature byte by byte from the answer's delay.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Receiver for WebhookReceiver {
    fn authenticate(&self, header: &dyn Fn(&str) -> Option<Vec<u8>>, body: &[u8]) -> Result<(), ConnectorError> {
        let Some(secret) = &self.secret else { return Ok(()) };
        let Some(sent) = header(&self.signature_header) else {
            return Err(ConnectorError::new(format!("the request has no {} header", self.signature_header))
                .with_hint("the table checks an HMAC of each body; sign the body with the table's secret"));
        };
        let expected = self.signature(secret, body);
        // Hex digests compare without regard to case, as senders differ.
        let sent = match self.encoding {
            Encoding::Hex => String::from_utf8_lossy(&sent).trim().to_ascii_lowercase(),
            Encoding::Base64 => String::from_utf8_lossy(&sent).trim().to_string(),
        };
        let expected = match self.encoding {
            Encoding::Hex => expected.to_ascii_lowercase(),
            Encoding::Base64 => expected,
        };
        match constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
            true => Ok(()),
            false => Err(ConnectorError::new(format!("the signature in {} does not match the body", self.signature_header))
                .with_hint("the body must be signed, as sent, with the table's secret")),
        }
    }

    fn idempotency_header(&self) -> Option<&str> {
        self.idempotency_header.as_deref()
    }

    fn body_is_text(&self) -> bool {
        self.body_is_text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};

    fn receiver(options: &[(&str, &str)]) -> WebhookReceiver {
        let schema = Arc::new(Schema::new(vec![Field::new("body", DataType::Utf8, true)]));
        let options: Options = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        WebhookReceiver::from_options(&schema, &options).unwrap()
    }

    /// RFC 4231's test case 2 (key "Jefe"), in GitHub's form and in base64.
    #[test]
    fn signatures_follow_rfc_4231() {
        let body = b"what do ya want for nothing?";
        let hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let github = receiver(&[("webhook.secret", "Jefe")]);
        let header = |value: String| move |name: &str| (name == "x-hub-signature-256").then(|| value.clone().into_bytes());
        assert!(github.authenticate(&header(format!("sha256={hex}")), body).is_ok());
        assert!(github.authenticate(&header(format!("sha256={}", hex.to_ascii_uppercase())), body).is_ok());
        assert!(github.authenticate(&header(format!("sha256={hex}")), b"what do ya want for nothing!").is_err());
        assert!(github.authenticate(&|_: &str| None, body).is_err(), "no header");
        let stripe_like = receiver(&[("webhook.secret", "Jefe"), ("webhook.signature.header", "X-Signature"), ("webhook.signature.encoding", "base64")]);
        let sent = |name: &str| (name == "x-signature").then(|| b"W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=".to_vec());
        assert!(stripe_like.authenticate(&sent, body).is_ok());
        assert!(receiver(&[]).authenticate(&|_: &str| None, body).is_ok(), "no secret: no check");
    }
}
