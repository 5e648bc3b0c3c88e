//! Bearer-token authentication: static tokens (config or `REHAB_SIM_TOKENS`,
//! else the development token), and expiring opaque tokens issued by
//! `/auth/login` and renewed by `/auth/refresh`. Tokens are never logged.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::config::AuthConfig;
use crate::api::DEV_TOKEN;

/// Tokens issued by login/refresh, with their expiry.
#[derive(Default)]
struct Issued {
    access: HashMap<String, Instant>,
    /// refresh token -> (username, expiry)
    refresh: HashMap<String, (String, Instant)>,
}

/// What `/auth/login` and `/auth/refresh` return.
#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
}

pub struct Auth {
    static_tokens: HashSet<String>,
    users: HashMap<String, String>,
    ttl: Duration,
    refresh_ttl: Duration,
    max_issued: usize,
    issued: Mutex<Issued>,
}

impl Auth {
    pub fn new(cfg: &AuthConfig) -> Self {
        let mut static_tokens: HashSet<String> = cfg.tokens.iter().cloned().collect();
        if static_tokens.is_empty() {
            tracing::warn!(
                "sim: no auth tokens configured; accepting the development token `{DEV_TOKEN}`"
            );
            static_tokens.insert(DEV_TOKEN.to_string());
        }
        Auth {
            static_tokens,
            users: cfg
                .users
                .iter()
                .map(|u| (u.username.clone(), u.password.clone()))
                .collect(),
            ttl: cfg.token_ttl,
            refresh_ttl: cfg.refresh_token_ttl,
            max_issued: cfg.max_issued_tokens,
            issued: Mutex::new(Issued::default()),
        }
    }

    /// Whether an `Authorization` header value carries a valid token.
    pub fn check(&self, header: Option<&[u8]>) -> bool {
        let Some(token) = header.and_then(bearer) else {
            return false;
        };
        if self.static_tokens.contains(token) {
            return true;
        }
        let now = Instant::now();
        let mut issued = self.issued.lock();
        match issued.access.get(token) {
            Some(exp) if *exp > now => true,
            Some(_) => {
                issued.access.remove(token);
                false
            }
            None => false,
        }
    }

    pub fn login(&self, username: &str, password: &str) -> Option<TokenPair> {
        match self.users.get(username) {
            Some(p) if p == password => Some(self.issue(username)),
            _ => None,
        }
    }

    /// Rotates a refresh token into a new pair; the old one stops working.
    pub fn refresh(&self, refresh_token: &str) -> Option<TokenPair> {
        let now = Instant::now();
        let user = {
            let mut issued = self.issued.lock();
            match issued.refresh.remove(refresh_token) {
                Some((user, exp)) if exp > now => user,
                _ => return None,
            }
        };
        Some(self.issue(&user))
    }

    fn issue(&self, user: &str) -> TokenPair {
        let now = Instant::now();
        let pair = TokenPair {
            access_token: random_token(),
            refresh_token: random_token(),
            token_type: "Bearer",
            expires_in: self.ttl.as_secs(),
            refresh_expires_in: self.refresh_ttl.as_secs(),
        };
        let mut issued = self.issued.lock();
        if issued.access.len() >= self.max_issued || issued.refresh.len() >= self.max_issued {
            issued.access.retain(|_, exp| *exp > now);
            issued.refresh.retain(|_, (_, exp)| *exp > now);
            // Still full of live tokens: drop the ones closest to expiry.
            evict_soonest(&mut issued.access, self.max_issued, |e| *e);
            evict_soonest(&mut issued.refresh, self.max_issued, |(_, e)| *e);
        }
        issued
            .access
            .insert(pair.access_token.clone(), now + self.ttl);
        issued.refresh.insert(
            pair.refresh_token.clone(),
            (user.to_string(), now + self.refresh_ttl),
        );
        pair
    }
}

fn evict_soonest<V>(map: &mut HashMap<String, V>, max: usize, exp: impl Fn(&V) -> Instant) {
    if map.len() < max {
        return;
    }
    let excess = map.len() + 1 - max;
    let mut by_exp: Vec<(Instant, String)> = map.iter().map(|(k, v)| (exp(v), k.clone())).collect();
    by_exp.sort();
    for (_, k) in by_exp.into_iter().take(excess) {
        map.remove(&k);
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(header: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(header).ok()?.trim();
    let (scheme, token) = s.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::random();
    let mut s = String::with_capacity(52);
    s.push_str("rst_");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(ttl: Duration) -> Auth {
        Auth::new(&AuthConfig {
            token_ttl: ttl,
            ..AuthConfig::default()
        })
    }

    #[test]
    fn dev_token_only_without_configured_tokens() {
        let a = auth(Duration::from_secs(60));
        assert!(a.check(Some(b"Bearer dev-token")));
        assert!(a.check(Some(b"bearer dev-token")));
        assert!(!a.check(Some(b"Bearer nope")));
        assert!(!a.check(Some(b"dev-token")));
        assert!(!a.check(None));
        let b = Auth::new(&AuthConfig {
            tokens: vec!["s3cret".into()],
            ..AuthConfig::default()
        });
        assert!(b.check(Some(b"Bearer s3cret")));
        assert!(!b.check(Some(b"Bearer dev-token")));
    }

    #[test]
    fn login_refresh_and_expiry() {
        let a = auth(Duration::from_millis(30));
        assert!(a.login("dev", "wrong").is_none());
        let pair = a.login("dev", "dev-password").unwrap();
        let h = format!("Bearer {}", pair.access_token);
        assert!(a.check(Some(h.as_bytes())));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!a.check(Some(h.as_bytes())));
        let renewed = a.refresh(&pair.refresh_token).unwrap();
        assert!(a.check(Some(format!("Bearer {}", renewed.access_token).as_bytes())));
        // Refresh tokens rotate.
        assert!(a.refresh(&pair.refresh_token).is_none());
    }

    #[test]
    fn issued_tokens_are_bounded() {
        let a = Auth::new(&AuthConfig {
            max_issued_tokens: 3,
            ..AuthConfig::default()
        });
        for _ in 0..10 {
            a.login("dev", "dev-password").unwrap();
        }
        let issued = a.issued.lock();
        assert!(issued.access.len() <= 3 && issued.refresh.len() <= 3);
    }
}
