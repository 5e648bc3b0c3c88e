//! HTTP basic auth for the admin server, against the bcrypt hashes of the web
//! config's `basic_auth_users`, and the policy of which requests need it.
//!
//! bcrypt is slow on purpose (≈70 ms at cost 10), and Prometheus scrapes every
//! few seconds, so a successful verification is cached (as the exporter-toolkit
//! does) under a SHA-256 of user, hash and password: the cache never holds a
//! password, and a scrape with known-good credentials costs one hash. Failed
//! attempts are not cached; they run bcrypt one at a time on the blocking pool,
//! so a flood of bad passwords costs at most one core and never stalls the
//! async workers or the traffic scheduler.

use std::collections::{BTreeMap, HashSet};

use axum::http::{header, HeaderMap, Method};
use base64::Engine as _;
use parking_lot::Mutex;
use ring::digest;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Successful verifications kept; past it the cache starts over. It only
/// bounds memory if someone with valid credentials cycles through passwords
/// that bcrypt's 72-byte truncation treats as equal.
const CACHE_MAX: usize = 1024;

struct User {
    /// SHA-256 of the name: fixed length, so comparing it in constant time
    /// does not leak the length of configured names either.
    name_digest: [u8; 32],
    hash: String,
}

/// The configured users and the verification cache.
pub struct BasicAuth {
    users: Vec<User>,
    cache: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt at a time (see the module doc).
    gate: tokio::sync::Semaphore,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Whether a request needs credentials when basic auth is configured.
///
/// Only `GET`/`HEAD` of `/-/healthy` and `/-/ready` are open: kubelet probes
/// and systemd health checks cannot easily carry a secret, the answers ("OK",
/// "Not ready") disclose nothing, and a probe that fails on auth would restart
/// a healthy canary. Everything else (`/metrics`, `/status`, `/`) needs auth,
/// and any other method (`POST /-/reload`, `/-/pause`, `/-/resume`, ...)
/// always does, whatever its path.
pub fn requires_auth(method: &Method, path: &str) -> bool {
    let read = *method == Method::GET || *method == Method::HEAD;
    !(read && matches!(path, "/-/healthy" | "/-/ready"))
}

/// `user`, `password` of an `Authorization: Basic ...` header.
pub fn credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let (user, pass) = decoded.split_at(colon);
    Some((user.to_vec(), pass[1..].to_vec()))
}

impl BasicAuth {
    /// Users and their bcrypt hashes, already validated by the web config.
    pub fn new(users: BTreeMap<String, String>) -> BasicAuth {
        BasicAuth {
            users: users
                .into_iter()
                .map(|(name, hash)| User {
                    name_digest: sha256(&[name.as_bytes()]),
                    hash,
                })
                .collect(),
            cache: Mutex::new(HashSet::new()),
            gate: tokio::sync::Semaphore::new(1),
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether the request's basic-auth credentials are valid.
    pub async fn check(&self, headers: &HeaderMap) -> bool {
        let Some((user, pass)) = credentials(headers) else {
            return false;
        };
        // Find the user without an early exit, so the time taken does not say
        // whether or where the name matched. An unknown name is checked
        // against a real user's hash (same cost) and then refused, so it
        // costs as much as a wrong password.
        let given = sha256(&[&user]);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, u) in self.users.iter().enumerate() {
            let eq = u.name_digest.ct_eq(&given);
            index = u64::conditional_select(&index, &(i as u64), eq);
            found |= eq;
        }
        let Some(entry) = self.users.get(index as usize) else {
            return false;
        };
        let found = bool::from(found);
        let key = sha256(&[&user, entry.hash.as_bytes(), &pass]);
        if found && self.cache.lock().contains(&key) {
            return true;
        }
        let Ok(_permit) = self.gate.acquire().await else {
            return false;
        };
        let hash = entry.hash.clone();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok && found {
            let mut cache = self.cache.lock();
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key);
        }
        ok && found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        h
    }

    fn auth() -> BasicAuth {
        // Cost 4, the minimum, keeps the test fast.
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let other = bcrypt::hash("other", 4).unwrap();
        BasicAuth::new(BTreeMap::from([
            ("alice".to_owned(), hash),
            ("bob".to_owned(), other),
        ]))
    }

    #[tokio::test]
    async fn right_credentials_pass_and_are_cached() {
        let a = auth();
        assert!(a.check(&basic("alice", "s3cret")).await);
        assert_eq!(a.cache.lock().len(), 1);
        assert!(a.check(&basic("alice", "s3cret")).await);
        assert!(a.check(&basic("bob", "other")).await);
        assert_eq!(a.cache.lock().len(), 2);
    }

    #[tokio::test]
    async fn wrong_credentials_fail_and_are_not_cached() {
        let a = auth();
        for h in [
            basic("alice", "wrong"),
            basic("alice", "other"), // bob's password
            basic("mallory", "s3cret"),
            basic("", ""),
            HeaderMap::new(),
        ] {
            assert!(!a.check(&h).await, "{h:?}");
        }
        assert!(a.cache.lock().is_empty());
    }

    #[test]
    fn credentials_parse_the_header() {
        let mut h = basic("u", "p:with:colons");
        assert_eq!(
            credentials(&h),
            Some((b"u".to_vec(), b"p:with:colons".to_vec()))
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("basic dTpw"),
        );
        assert_eq!(credentials(&h), Some((b"u".to_vec(), b"p".to_vec())));
        for bad in ["Bearer dTpw", "Basic", "Basic !!!", "Basic dQ=="] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert_eq!(credentials(&h), None, "{bad}");
        }
    }

    #[test]
    fn only_probe_reads_are_open() {
        let cases = [
            (Method::GET, "/-/healthy", false),
            (Method::HEAD, "/-/ready", false),
            (Method::GET, "/-/ready", false),
            (Method::POST, "/-/healthy", true),
            (Method::GET, "/metrics", true),
            (Method::GET, "/", true),
            (Method::GET, "/status", true),
            (Method::POST, "/-/reload", true),
            (Method::POST, "/-/pause", true),
            (Method::POST, "/-/resume", true),
            (Method::DELETE, "/anything", true),
            (Method::GET, "/-/healthy/", true),
        ];
        for (m, p, want) in cases {
            assert_eq!(requires_auth(&m, p), want, "{m} {p}");
        }
    }
}
