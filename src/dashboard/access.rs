//! Who may read the dashboard. On the loopback address only this machine's users can reach it,
//! as with Jupyter; any other address needs a token, given with `--token` or generated and
//! printed in the URL to open. A request shows it as `?token=…` or `Authorization: Bearer …`.

use std::net::IpAddr;

use crate::error::{Result, TuneError};

/// The token requests must carry, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub token: Option<String>,
}

impl Access {
    /// The rule for serving on `host`: a given token always applies; a non-loopback host
    /// without one gets a fresh random token.
    pub fn for_host(host: IpAddr, token: Option<String>) -> Result<Access> {
        if let Some(t) = &token
            && (t.len() < 16 || !t.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(TuneError::Config {
                file: "--token".into(),
                key: "token".into(),
                problem: "a token needs at least 16 printable ASCII characters, without spaces".into(),
                fix: "leave --token out and use the one tune prints, or give a longer one".into(),
            });
        }
        Ok(Access { token: token.or_else(|| (!host.is_loopback()).then(generate)) })
    }

    /// Whether a request with this query string and Authorization header may be served.
    pub fn allows(&self, query: Option<&str>, authorization: Option<&str>) -> bool {
        let Some(expected) = &self.token else { return true };
        let from_query = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter_map(|pair| pair.strip_prefix("token="))
            .any(|given| same(given, expected));
        let from_header =
            authorization.and_then(|h| h.strip_prefix("Bearer ")).is_some_and(|given| same(given, expected));
        from_query || from_header
    }
}

/// 32 random hex digits (128 bits).
fn generate() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32).map(|_| char::from_digit(rng.random_range(0..16), 16).expect("a hex digit")).collect()
}

/// Compares in time independent of where the strings first differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_open_other_hosts_get_a_token_and_requests_must_show_it() {
        let local = Access::for_host("127.0.0.1".parse().unwrap(), None).unwrap();
        assert_eq!(local.token, None);
        assert!(local.allows(None, None));
        let open = Access::for_host("0.0.0.0".parse().unwrap(), None).unwrap();
        let token = open.token.clone().expect("generated");
        assert_eq!(token.len(), 32);
        assert_ne!(Access::for_host("0.0.0.0".parse().unwrap(), None).unwrap().token, open.token, "fresh each time");
        assert!(!open.allows(None, None));
        assert!(!open.allows(Some("since=3"), Some("Bearer wrong")));
        assert!(open.allows(Some(&format!("since=3&token={token}")), None));
        assert!(open.allows(None, Some(&format!("Bearer {token}"))));
        assert!(!open.allows(Some(&format!("token={}", &token[..31])), None), "a prefix is not the token");
        let given = Access::for_host("::1".parse().unwrap(), Some("0123456789abcdef".into())).unwrap();
        assert!(!given.allows(None, None), "a given token applies on loopback too");
        let short = Access::for_host("0.0.0.0".parse().unwrap(), Some("short".into())).unwrap_err().to_string();
        assert!(short.contains("--token") && short.contains("16"), "{short}");
    }
}
