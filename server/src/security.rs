//! What every response says about how a browser may treat it, and what the server may believe about
//! the connection a request came over.
//!
//! Pages get a Content-Security-Policy with the nonce Leptos put on its own inline scripts (the
//! hydration loader and streamed resources), so an injected `<script>` does not run even if markup ever
//! escaped; everything else gets a policy that allows nothing inline. Cookies are `Secure`, and named
//! with the `__Host-` prefix, whenever the request came over TLS, which is assumed for every host but
//! the loopback ones unless configured otherwise.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// How requests reach the server, as the operator configured it.
#[derive(Clone, Debug)]
pub struct Transport {
    /// `Some(true)`: every request came over TLS (terminated here or by a proxy); `Some(false)`: none
    /// did; `None`: every request did except those addressed to a loopback host (`localhost`,
    /// `127.0.0.1`, `[::1]`), which is how people try Slope on their own machine.
    pub tls: Option<bool>,
    /// Believe `X-Forwarded-For` and `X-Forwarded-Proto`: only behind reverse proxies that set them.
    pub trust_forwarded: bool,
    /// How many trusted proxies append to `X-Forwarded-For`: the client is the entry that many places
    /// from its right end. Entries further left were written by the client and prove nothing.
    pub forwarded_hops: usize,
}

impl Transport {
    /// Whether this request came over TLS.
    pub fn is_tls(&self, headers: &HeaderMap) -> bool {
        if self.trust_forwarded
            && let Some(proto) = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok())
        {
            // The nearest proxy's value is the last one, for the same reason as with addresses.
            return proto.rsplit(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        }
        match self.tls {
            Some(tls) => tls,
            None => !host_is_loopback(headers),
        }
    }

    /// The scheme pages of this server are served under, as browsers see it.
    pub fn scheme(&self, headers: &HeaderMap) -> &'static str {
        if self.is_tls(headers) { "https" } else { "http" }
    }

    /// The client's address: the peer's, or behind trusted proxies the entry of `X-Forwarded-For` the
    /// nearest of them wrote. All the header's lines count, in order, as one list.
    pub fn client_address(&self, headers: &HeaderMap, peer: SocketAddr) -> String {
        if !self.trust_forwarded {
            return peer.ip().to_string();
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let hops = self.forwarded_hops.max(1);
        // Fewer entries than proxies means the request skipped one: the peer is all that is known.
        let Some(entry) = entries.len().checked_sub(hops).map(|i| entries[i]) else {
            return peer.ip().to_string();
        };
        // An address that does not parse is the client's own text, not a proxy's.
        match entry.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => peer.ip().to_string(),
        }
    }
}

fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || name.to_ascii_lowercase().ends_with(".localhost")
}

/// The policy of a server-rendered page: scripts only from this server or bearing the page's nonce,
/// WebAssembly allowed (the browser bundle), styles from this server plus `style` attributes (charts and
/// progress bars size their bars with them; an attribute cannot run code), nothing framed or framing.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; style-src-attr 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The policy of every other response (API answers, files, errors): nothing inline runs.
pub const DEFAULT_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
     style-src-attr 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; \
     frame-ancestors 'none'";

/// The nonce minted for one request at the edge. A page rendered for the request uses it for its inline
/// scripts (the render context provides it to Leptos), and [`headers`] writes the page's policy from the
/// same value: one place decides every response's policy.
#[derive(Clone, Debug)]
pub struct PageNonce(pub std::sync::Arc<str>);

/// Adds the security headers to every response. An HTML page gets the page policy naming the nonce
/// minted here for the request (its inline scripts carry it), every other response the default policy,
/// unless a handler set its own. HSTS is only sent over TLS, where browsers heed it.
pub async fn headers(State(transport): State<Transport>, mut req: Request, next: Next) -> Response {
    let tls = transport.is_tls(req.headers());
    let nonce = leptos::nonce::Nonce::new().as_inner().clone();
    req.extensions_mut().insert(PageNonce(nonce.clone()));
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        let html =
            h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/html"));
        let page = html.then(|| HeaderValue::from_str(&page_policy(&nonce)).ok()).flatten();
        h.insert(header::CONTENT_SECURITY_POLICY, page.unwrap_or(HeaderValue::from_static(DEFAULT_POLICY)));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // `same-origin` keeps the Referer on this server's own requests (the cross-site check falls back
    // to it) and off every link that leaves it.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    if tls {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const PEER: &str = "10.0.0.9:4000";

    fn behind(hops: usize) -> Transport {
        Transport { tls: None, trust_forwarded: true, forwarded_hops: hops }
    }

    #[test]
    fn the_client_is_the_entry_the_nearest_trusted_proxy_wrote() {
        let peer: SocketAddr = PEER.parse().unwrap();
        // The client wrote `6.6.6.6` itself; the proxy appended the address it saw.
        let spoofed = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7")]);
        assert_eq!(behind(1).client_address(&spoofed, peer), "203.0.113.7");
        assert_eq!(behind(2).client_address(&spoofed, peer), "6.6.6.6");
        // Several header lines are one list.
        let split = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(behind(1).client_address(&split, peer), "198.51.100.1");
        // Too few entries, or an entry that is no address, leaves the peer.
        assert_eq!(behind(3).client_address(&spoofed, peer), "10.0.0.9");
        assert_eq!(behind(1).client_address(&headers(&[("x-forwarded-for", "a, b")]), peer), "10.0.0.9");
        assert_eq!(behind(1).client_address(&HeaderMap::new(), peer), "10.0.0.9");
        // Without trust the header is ignored altogether.
        let direct = Transport { trust_forwarded: false, ..behind(1) };
        assert_eq!(direct.client_address(&spoofed, peer), "10.0.0.9");
    }

    #[test]
    fn tls_is_assumed_everywhere_but_on_loopback_hosts() {
        let auto = Transport { tls: None, trust_forwarded: false, forwarded_hops: 1 };
        for host in ["127.0.0.1:3000", "localhost", "LOCALHOST:80", "[::1]:3000", "app.localhost:3000"] {
            assert!(!auto.is_tls(&headers(&[("host", host)])), "{host}");
        }
        for host in ["slope.example", "slope.example:443", "192.168.1.4:3000", "[2001:db8::1]:3000"] {
            assert!(auto.is_tls(&headers(&[("host", host)])), "{host}");
        }
        assert!(auto.is_tls(&HeaderMap::new()), "no host is not a loopback host");
        let never = Transport { tls: Some(false), ..auto.clone() };
        assert!(!never.is_tls(&headers(&[("host", "slope.example")])));
        let always = Transport { tls: Some(true), ..auto.clone() };
        assert!(always.is_tls(&headers(&[("host", "127.0.0.1:3000")])));
        // A trusted proxy's scheme wins; an untrusted one's is ignored.
        let proxied = headers(&[("host", "127.0.0.1:3000"), ("x-forwarded-proto", "https")]);
        assert!(behind(1).is_tls(&proxied));
        assert!(!auto.is_tls(&proxied));
        assert!(!behind(1).is_tls(&headers(&[("host", "slope.example"), ("x-forwarded-proto", "https, http")])));
    }

    #[test]
    fn page_policies_carry_the_nonce_and_allow_no_inline_script_without_it() {
        let page = page_policy("abc123");
        assert!(page.contains("script-src 'self' 'nonce-abc123' 'wasm-unsafe-eval'"), "{page}");
        for policy in [page.as_str(), DEFAULT_POLICY] {
            assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
            assert!(policy.contains("object-src 'none'"), "{policy}");
            let script = policy.split(';').find(|d| d.trim().starts_with("script-src")).unwrap();
            assert!(!script.contains("'unsafe-inline'") && !script.contains("'unsafe-eval'"), "{policy}");
        }
    }
}
