//! Property tests (proptest) of the parsers of what the target answers: the
//! `Retry-After` header of a 429 and the token pair of a login or refresh.
//! A canary reads answers from a service that may be broken in any way, so
//! these must never panic, and what they return must be safe to schedule with
//! (`Instant + duration` must not overflow).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rehab_canary::client::parse_retry_after;
use rehab_canary::credentials::{parse_issued, MAX_TOKEN_LIFETIME};

/// Cases per property; `PROPTEST_CASES=20000` searches deeper by hand.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// A "now" anywhere from 1970 to 2200.
fn now() -> impl Strategy<Value = SystemTime> {
    (0u64..7_258_118_400).prop_map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// A token answer: the expected shapes (top level or under `data`) with
/// values of any type, and junk.
fn issued_json() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
    ];
    let keys = prop::sample::select(vec![
        "access_token",
        "refresh_token",
        "expires_in",
        "token_type",
        "data",
    ]);
    let object = prop::collection::vec((keys, value), 0..5).prop_map(|kv| {
        serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    });
    prop_oneof![
        object.clone().prop_map(|o| serde_json::to_vec(&o).unwrap()),
        object.prop_map(|o| serde_json::to_vec(&serde_json::json!({ "data": o })).unwrap()),
        (".{1,12}", any::<u64>()).prop_map(|(t, e)| {
            serde_json::to_vec(&serde_json::json!({"access_token": t, "expires_in": e})).unwrap()
        }),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn retry_after_never_panics_on_arbitrary_bytes(
        raw in prop::collection::vec(any::<u8>(), 0..64),
        now in now(),
    ) {
        if let Some(d) = parse_retry_after(&raw, now) {
            // Whatever it says, the wait is representable from now.
            let _ = Instant::now().checked_add(d.min(Duration::from_secs(1 << 40)));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates(
        secs in any::<u64>(),
        at in now(),
        now in now(),
        pad in "[ \t]{0,2}",
    ) {
        prop_assert_eq!(
            parse_retry_after(format!("{pad}{secs}{pad}").as_bytes(), now),
            Some(Duration::from_secs(secs))
        );
        let date = httpdate::fmt_http_date(at);
        let got = parse_retry_after(date.as_bytes(), now);
        let want = at.duration_since(now).unwrap_or(Duration::ZERO);
        prop_assert_eq!(got, Some(want), "{}", date);
    }

    #[test]
    fn retry_after_never_panics_on_date_like_text(
        text in "(Mon|Sun|Xyz), [0-9]{1,3} (Jan|Dec|Foo) [0-9]{1,6} [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2} (GMT|UTC)",
        now in now(),
    ) {
        let _ = parse_retry_after(text.as_bytes(), now);
    }

    #[test]
    fn token_answers_never_panic_and_lifetimes_are_schedulable(body in issued_json()) {
        if let Some((access, refresh, expires)) = parse_issued(&body) {
            prop_assert!(!access.is_empty());
            prop_assert!(refresh.as_deref() != Some(""));
            if let Some(ttl) = expires {
                prop_assert!(ttl <= MAX_TOKEN_LIFETIME);
                prop_assert!(Instant::now().checked_add(ttl).is_some());
            }
        }
    }
}
