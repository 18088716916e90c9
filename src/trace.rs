//! W3C trace context: a join's trace id is taken from the caller's `traceparent` or created,
//! travels in the Kafka record's headers, and is logged by the consumer that applies it.

use actix_web::HttpRequest;

/// The part of a `traceparent` queuegate carries along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: this hop's span.
    pub span_id: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

impl TraceContext {
    /// Parses `00-<trace-id>-<parent-id>-<flags>`; None when malformed.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || !is_hex(trace, 32) || !is_hex(parent, 16) || flags.len() != 2 || parts.next().is_some() {
            return None;
        }
        Some(TraceContext { trace_id: trace.to_owned(), span_id: new_span_id() })
    }

    /// Continues the caller's trace, or starts one.
    pub fn from_request(req: &HttpRequest) -> TraceContext {
        req.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceContext::parse).unwrap_or_else(
            || TraceContext { trace_id: uuid::Uuid::new_v4().simple().to_string(), span_id: new_span_id() },
        )
    }

    /// The `traceparent` value for the next hop.
    pub fn header(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

fn new_span_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    u[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_keeps_its_trace_id() {
        let t = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(TraceContext::parse(&t.header()).is_some());
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        assert!(TraceContext::parse("00-xyz-00f067aa0ba902b7-01").is_none());
        assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(TraceContext::parse("").is_none());
    }
}
