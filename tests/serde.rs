//! Feature `serde`: configurations, descriptions, candidates, keys and stats round-trip through
//! JSON; a configuration file may name only the fields it changes; a key is its WireGuard
//! base64 string, and a non-canonical one is refused.

#![cfg(feature = "serde")]

use std::time::Duration;

use icepact::{
    AgentRestart, Config, Description, EndpointConfig, PeerStats, PublicKey, RestartPolicy,
};
use proptest::prelude::*;

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

#[test]
fn configurations_round_trip_and_take_defaults_for_missing_fields() {
    let mut config = Config::default();
    config.gathering_timeout = Duration::from_secs(5);
    config.agent_restart = AgentRestart::InPlace;
    config.policy = RestartPolicy::Seed;
    assert_eq!(round_trip(&config), config);
    let partial: Config =
        serde_json::from_str(r#"{"agent_restart": "InPlace", "max_candidates": 8}"#).unwrap();
    let mut expected = Config::default();
    expected.agent_restart = AgentRestart::InPlace;
    expected.max_candidates = 8;
    assert_eq!(partial, expected);
    let endpoint: EndpointConfig = serde_json::from_str(r#"{"limits": {"burst": 4}}"#).unwrap();
    assert_eq!(endpoint.limits.burst, 4);
    assert_eq!(endpoint.peer, Config::default());
    assert!(serde_json::from_str::<Config>(r#"{"max_candidates": -1}"#).is_err());
    let mut stats = PeerStats::default();
    stats.applied = 3;
    stats.replayed = 1;
    assert_eq!(round_trip(&stats), stats);
}

#[test]
fn keys_are_their_base64_strings() {
    let key = icepact::wire::SecretKey::from_bytes([7; 32]).public_key();
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(json, format!("\"{key}\""));
    assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
    let mut high = key;
    high.0[31] |= 0x80;
    let err = serde_json::from_str::<PublicKey>(&format!("\"{high}\"")).unwrap_err();
    assert!(err.to_string().contains("canonical"), "{err}");
    assert!(serde_json::from_str::<PublicKey>("\"not base64\"").is_err());
}

proptest! {
    #[test]
    fn descriptions_round_trip(d in icepact::strategies::description()) {
        let back: Description = round_trip(&d);
        prop_assert_eq!(back, d);
    }
}
