//! Who may announce which peer id: the signaling server's authentication.
//!
//! * **Off by default** (every announce is taken, first come first served): the right choice on
//!   loopback only. `serve` refuses a non-loopback address without authentication unless told
//!   `--insecure`.
//! * **[`Authenticator`]**: the server asks it once per announce, with the peer id asked for, the
//!   token the client presented (in the announce's `token` param, or the WebSocket URL's `token`
//!   query parameter, which is how a browser sends one), the request's `Origin` and the remote
//!   address. It allows, allows under another id (the id the credential names wins), or refuses
//!   with a reason the client is told (`-32001`, "unauthorized"). It may be asynchronous (the
//!   binding's hook calls into JS).
//! * **[`HmacTokenAuth`]**: the built-in mode: a JWT signed with HS256 (RFC 7519, through the
//!   maintained `jsonwebtoken` crate) whose `sub` is the peer id and whose `exp` is checked (no
//!   leeway beyond [`LEEWAY_SECS`]). A token for `alice` cannot announce `bob`; a client that
//!   announces without an id (or with the token's id) gets the token's. [`issue_token`] makes
//!   one (a backend hands it to its user).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Clock skew tolerated on `exp`, seconds.
pub const LEEWAY_SECS: u64 = 5;
/// Shortest accepted HMAC secret, bytes (RFC 7518 §3.2: at least the hash's size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest token looked at, bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// What the server knows of an announce when it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The id the client asks for.
    pub peer_id: String,
    /// The credential it presented, if any.
    pub token: Option<String>,
    /// The WebSocket request's `Origin` header (browsers send one).
    pub origin: Option<String>,
    pub remote_address: SocketAddr,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Allow,
    /// Allowed, under this id (the credential's) instead of the one asked for.
    AllowAs(String),
    /// Refused; the reason goes back to the client.
    Refuse(String),
}

/// A future an [`Authenticator`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = AuthDecision> + Send + 'a>>;

/// Decides announces. See the module documentation.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, request: &'a AuthRequest) -> AuthFuture<'a>;
}

/// The server's authenticator, comparable and printable for `ServerConfig`.
#[derive(Clone)]
pub struct AuthHook(pub Arc<dyn Authenticator>);

impl AuthHook {
    pub fn new(a: impl Authenticator) -> Self {
        AuthHook(Arc::new(a))
    }
}

impl std::fmt::Debug for AuthHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthHook(..)")
    }
}

impl PartialEq for AuthHook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// HS256 JWTs whose `sub` is the peer id. The secret is kept, never printed.
pub struct HmacTokenAuth {
    key: DecodingKey,
}

impl std::fmt::Debug for HmacTokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacTokenAuth(..)")
    }
}

fn check_secret(secret: &[u8]) -> Result<()> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::InvalidConfig(format!(
            "the auth secret must be at least {MIN_SECRET_BYTES} bytes, got {}",
            secret.len()
        )));
    }
    Ok(())
}

impl HmacTokenAuth {
    pub fn new(secret: &[u8]) -> Result<Self> {
        check_secret(secret)?;
        let key = DecodingKey::from_secret(secret)
            .map_err(|e| Error::InvalidConfig(format!("bad auth secret: {e}")))?;
        Ok(HmacTokenAuth { key })
    }

    /// The decision for one announce (synchronous: nothing here waits).
    pub fn decide(&self, request: &AuthRequest) -> AuthDecision {
        let Some(token) = request.token.as_deref() else {
            return AuthDecision::Refuse("a token is required".into());
        };
        if token.len() > MAX_TOKEN_BYTES {
            return AuthDecision::Refuse("token too long".into());
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "sub"]);
        match jsonwebtoken::decode::<Claims>(token, &self.key, &v) {
            Ok(data) => {
                let sub = data.claims.sub;
                if request.peer_id.is_empty() || request.peer_id == sub {
                    AuthDecision::AllowAs(sub)
                } else {
                    AuthDecision::Refuse(format!(
                        "the token is for another peer id than '{}'",
                        request.peer_id
                    ))
                }
            }
            Err(e) => AuthDecision::Refuse(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired".into(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad token signature".into(),
                _ => "invalid token".into(),
            }),
        }
    }
}

impl Authenticator for HmacTokenAuth {
    fn authenticate<'a>(&'a self, request: &'a AuthRequest) -> AuthFuture<'a> {
        let d = self.decide(request);
        Box::pin(async move { d })
    }
}

/// An HS256 token for `peer_id`, valid for `ttl` from now.
/// The longest lifetime a token may be issued for: 20 years of 365 days, in seconds (the
/// binding once said 631152000 in its message while refusing above this).
pub const MAX_TOKEN_TTL_SECONDS: u64 = 20 * 365 * 86_400;

/// A token lifetime given in seconds (as JS gives it): 1 to [`MAX_TOKEN_TTL_SECONDS`], finite;
/// [`Error::InvalidConfig`] naming `ttlSeconds` otherwise.
pub fn token_ttl(seconds: f64) -> Result<Duration> {
    if !seconds.is_finite() || !(1.0..=MAX_TOKEN_TTL_SECONDS as f64).contains(&seconds) {
        return Err(Error::InvalidConfig(format!(
            "ttlSeconds must be in 1..={MAX_TOKEN_TTL_SECONDS}, got {seconds}"
        )));
    }
    Ok(Duration::from_secs(seconds as u64))
}

pub fn issue_token(secret: &[u8], peer_id: &str, ttl: Duration) -> Result<String> {
    check_secret(secret)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let claims = Claims {
        sub: peer_id.to_string(),
        exp: (now + ttl).as_secs(),
    };
    let key = EncodingKey::from_secret(secret)
        .map_err(|e| Error::InvalidConfig(format!("bad auth secret: {e}")))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| Error::Internal(format!("token not made: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_lifetime_outside_one_second_to_twenty_years_is_refused() {
        for bad in [0.0, 0.5, -1.0, f64::NAN, f64::INFINITY, 630_720_001.0] {
            let e = token_ttl(bad).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidConfig(m) if m.contains("ttlSeconds")),
                "{bad}: {e}"
            );
        }
        assert_eq!(token_ttl(1.0).unwrap(), Duration::from_secs(1));
        assert_eq!(
            token_ttl(630_720_000.0).unwrap(),
            Duration::from_secs(MAX_TOKEN_TTL_SECONDS)
        );
    }

    fn req(peer_id: &str, token: Option<String>) -> AuthRequest {
        AuthRequest {
            peer_id: peer_id.into(),
            token,
            origin: None,
            remote_address: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn a_token_admits_its_own_peer_id_only() {
        let auth = HmacTokenAuth::new(SECRET).unwrap();
        let t = issue_token(SECRET, "alice", Duration::from_secs(60)).unwrap();
        assert_eq!(
            auth.decide(&req("alice", Some(t.clone()))),
            AuthDecision::AllowAs("alice".into())
        );
        assert_eq!(
            auth.decide(&req("", Some(t.clone()))),
            AuthDecision::AllowAs("alice".into())
        );
        assert!(matches!(
            auth.decide(&req("bob", Some(t))),
            AuthDecision::Refuse(_)
        ));
    }

    #[test]
    fn missing_forged_and_expired_tokens_are_refused() {
        let auth = HmacTokenAuth::new(SECRET).unwrap();
        assert_eq!(
            auth.decide(&req("alice", None)),
            AuthDecision::Refuse("a token is required".into())
        );
        let other = issue_token(
            b"another-secret-another-secret-!!",
            "alice",
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            auth.decide(&req("alice", Some(other))),
            AuthDecision::Refuse("bad token signature".into())
        );
        // Expired well beyond the leeway.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "alice".into(),
                exp: now.as_secs() - 3600,
            },
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        assert_eq!(
            auth.decide(&req("alice", Some(old))),
            AuthDecision::Refuse("token expired".into())
        );
        assert_eq!(
            auth.decide(&req("alice", Some("not.a.jwt".into()))),
            AuthDecision::Refuse("invalid token".into())
        );
        // alg=none is never accepted.
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(matches!(
            auth.decide(&req("alice", Some(none.into()))),
            AuthDecision::Refuse(_)
        ));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            HmacTokenAuth::new(b"short"),
            Err(Error::InvalidConfig(_))
        ));
        assert!(issue_token(b"short", "a", Duration::from_secs(1)).is_err());
    }
}
