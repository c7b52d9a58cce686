//! Two kinds of members, kept apart by the call's name.
//!
//! icepact nodes speak sealed envelopes, browsers speak SDP: the two cannot talk to each other,
//! so a call holds one kind only, and the service checks that every message fits its call's
//! kind (rule CALL_NAMESPACE). A call whose name starts with `ip-` is a node call (the
//! `RoomBackend` of `icepact-tokio` names its calls so); any other call is a browser call.
//!
//! - node calls: `OFFER` or `ANSWER`, the body a sealed envelope in standard base64 (the
//!   service cannot open it);
//! - browser calls: `OFFER` or `ANSWER` with a body `{"from": id, "description": {"type":
//!   "offer"|"answer", "sdp": "…"}}` whose type matches the kind, or `CANDIDATE` with a body
//!   `{"from": id, "candidate": {…}|null}` (trickle ICE). `id` is the member's own id (1 to 64
//!   characters of `A–Z a–z 0–9 _ -`): seed 004's service identifies no one, members name
//!   themselves, and the demo page chooses roles by comparing these ids.

use base64ct::{Base64, Encoding};
use serde::Deserialize;

/// The prefix of node calls.
pub const NODE_PREFIX: &str = "ip-";

/// The kind of members a call holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    /// icepact nodes (`ip-…`): sealed envelopes.
    Node,
    /// Browsers (every other name): SDP descriptions and candidates.
    Browser,
}

impl Namespace {
    /// The namespace of `call`.
    pub fn of(call: &str) -> Namespace {
        if call.starts_with(NODE_PREFIX) {
            Namespace::Node
        } else {
            Namespace::Browser
        }
    }

    /// Rule CALL_NAMESPACE: whether a message of `kind` with `body` fits a call of this kind.
    /// The error says what does not.
    pub fn check(self, kind: &str, body: Option<&str>) -> Result<(), &'static str> {
        match self {
            Namespace::Node => {
                if !matches!(kind, "OFFER" | "ANSWER") {
                    return Err("kind must be OFFER or ANSWER in a node call");
                }
                match body {
                    Some(b) if is_base64(b) => Ok(()),
                    _ => Err("a node call's body must be a sealed envelope in base64"),
                }
            }
            Namespace::Browser => check_browser(kind, body.unwrap_or("")),
        }
    }
}

/// Canonical standard base64 with padding, not empty (what `RoomBackend` writes; a decoder
/// that also took non-canonical padding bits would let two bodies mean one envelope).
fn is_base64(s: &str) -> bool {
    !s.is_empty() && Base64::decode_vec(s).is_ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrowserBody {
    from: String,
    #[serde(default)]
    description: Option<Description>,
    /// `Some(None)` for `"candidate": null` (end of candidates), `None` when absent.
    #[serde(default, deserialize_with = "present")]
    candidate: Option<Option<serde_json::Map<String, serde_json::Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Description {
    #[serde(rename = "type")]
    kind: String,
    sdp: String,
}

fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<serde_json::Map<String, serde_json::Value>>>, D::Error> {
    Option::deserialize(d).map(Some)
}

fn check_browser(kind: &str, body: &str) -> Result<(), &'static str> {
    let b: BrowserBody = serde_json::from_str(body)
        .map_err(|_| "a browser call's body must be JSON {from, description|candidate}")?;
    let id_ok = (1..=64).contains(&b.from.len())
        && b.from
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
    if !id_ok {
        return Err("from must be 1 to 64 characters of A-Z a-z 0-9 _ -");
    }
    match (kind, b.description, b.candidate) {
        ("OFFER", Some(d), None) if d.kind == "offer" && !d.sdp.is_empty() => Ok(()),
        ("ANSWER", Some(d), None) if d.kind == "answer" && !d.sdp.is_empty() => Ok(()),
        ("CANDIDATE", None, Some(_)) => Ok(()),
        ("OFFER" | "ANSWER" | "CANDIDATE", _, _) => {
            Err("OFFER/ANSWER carry a description of that type, CANDIDATE a candidate")
        }
        _ => Err("kind must be OFFER, ANSWER or CANDIDATE in a browser call"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_calls_take_base64_envelopes_only() {
        let ns = Namespace::of("ip-00ff");
        assert_eq!(ns, Namespace::Node);
        assert_eq!(ns.check("OFFER", Some("AAEC")), Ok(()));
        assert_eq!(ns.check("OFFER", Some("AAE=")), Ok(()));
        assert!(ns.check("OFFER", Some("AA")).is_err());
        // Non-canonical: the padding bits of the last character are not zero.
        assert!(ns.check("OFFER", Some("AAF=")).is_err());
        assert!(ns.check("OFFER", Some("")).is_err());
        assert!(ns.check("OFFER", Some("{\"from\":\"a\"}")).is_err());
        assert!(ns.check("OFFER", None).is_err());
        assert!(ns.check("CANDIDATE", Some("AAEC")).is_err());
    }

    #[test]
    fn browser_calls_take_descriptions_and_candidates() {
        let ns = Namespace::of("demo");
        assert_eq!(ns, Namespace::Browser);
        let offer = r#"{"from":"a1","description":{"type":"offer","sdp":"v=0"}}"#;
        assert_eq!(ns.check("OFFER", Some(offer)), Ok(()));
        assert!(
            ns.check("ANSWER", Some(offer)).is_err(),
            "type must match kind"
        );
        let cand = r#"{"from":"a1","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0"}}"#;
        assert_eq!(ns.check("CANDIDATE", Some(cand)), Ok(()));
        assert_eq!(
            ns.check("CANDIDATE", Some(r#"{"from":"a1","candidate":null}"#)),
            Ok(())
        );
        assert!(ns.check("CANDIDATE", Some(r#"{"from":"a1"}"#)).is_err());
        assert!(
            ns.check("OFFER", Some("AAEC")).is_err(),
            "an envelope in a browser call"
        );
        assert!(ns
            .check(
                "OFFER",
                Some(r#"{"from":"","description":{"type":"offer","sdp":"v"}}"#)
            )
            .is_err());
        assert!(ns
            .check(
                "OFFER",
                Some(r#"{"from":"a","description":{"type":"offer","sdp":"v"},"x":1}"#)
            )
            .is_err());
        assert!(ns.check("JOIN", Some(offer)).is_err());
    }
}
