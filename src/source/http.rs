//! Downloads over http(s) from addresses that others control: redirects are followed here, not by
//! the HTTP client, so that every hop's address is checked (http or https, with a host), a loop or
//! a long chain is refused, and a deadline covers the whole chain.

use std::io::Read;
use std::time::{Duration, Instant};

use url::Url;

/// Most redirects followed for one photo.
pub const MAX_REDIRECTS: usize = 5;

/// The HTTP client with its limits.
pub struct Http {
    agent: ureq::Agent,
    max_bytes: u64,
    timeout: Duration,
    guard: Option<crate::netguard::Guard>,
}

/// Settings of an [`Http`] client.
pub struct HttpLimits {
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time a whole download may take, redirects included.
    pub timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
    /// Which addresses may be reached (`None`: any); checked before every hop, redirects included.
    pub guard: Option<crate::netguard::Guard>,
}

/// Checks an address given as a photo: an absolute http or https URL with a host.
pub fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))?;
    check_parsed(url)
}

/// Checks a parsed address: http or https, with a host.
fn check_parsed(url: Url) -> Result<Url, String> {
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("{:?} is not an http(s) URL", shorten(url.as_str())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{:?} has no host", shorten(url.as_str())));
    }
    Ok(url)
}

/// Where a redirect from `from` with header `Location: location` leads, if knockoff may follow it:
/// a relative location is resolved against `from`; the result must be an http(s) URL with a host.
pub fn redirect_target(from: &Url, location: &str) -> Result<Url, String> {
    let to = from.join(location).map_err(|e| format!("redirect to {:?} refused: not a valid URL ({e})", shorten(location)))?;
    check_parsed(to).map_err(|e| format!("redirect refused: {e}"))
}

/// At most 200 characters of an address for a message (a `data:` URL can be megabytes).
fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

impl Http {
    /// A client that follows no redirect by itself, returns error statuses as responses, reads
    /// no proxy from the environment, and sends knockoff's user agent.
    pub fn new(limits: &HttpLimits) -> Http {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(limits.connect_timeout))
            .timeout_global(Some(limits.timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .proxy(None)
            .user_agent(concat!("knockoff/", env!("CARGO_PKG_VERSION")))
            .build();
        Http { agent: config.new_agent(), max_bytes: limits.max_bytes, timeout: limits.timeout, guard: limits.guard.clone() }
    }

    /// Downloads `url`, following up to `MAX_REDIRECTS` checked redirects, until `deadline` at
    /// the latest (and the client's own time-out); errors in plain words.
    pub fn get(&self, url: &str, deadline: Option<Instant>) -> Result<Vec<u8>, String> {
        let own = Instant::now() + self.timeout;
        let deadline = deadline.map_or(own, |d| d.min(own));
        let mut at = check_url(url)?;
        let mut seen = vec![at.clone()];
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                return Err("download failed: timed out".into());
            };
            match self.one(&at, left)? {
                Hop::Body(bytes) => return Ok(bytes),
                Hop::Redirect(location) => {
                    let next = redirect_target(&at, &location)?;
                    if seen.contains(&next) {
                        return Err(format!("redirect loop at {:?}", shorten(next.as_str())));
                    }
                    if seen.len() > MAX_REDIRECTS {
                        return Err(format!("more than {MAX_REDIRECTS} redirects"));
                    }
                    seen.push(next.clone());
                    at = next;
                }
            }
        }
    }

    /// One request: the body of a success, or where a redirect leads.
    fn one(&self, url: &Url, left: Duration) -> Result<Hop, String> {
        if let (Some(guard), Some(host)) = (&self.guard, url.host_str()) {
            let port = url.port_or_known_default().unwrap_or(80);
            guard.resolve(&format!("{host}:{port}")).map_err(|e| format!("download refused: {e}"))?;
        }
        let request = self.agent.get(url.as_str()).config().timeout_global(Some(left)).build();
        let resp = request.call().map_err(|e| format!("download failed: {}", describe(e)))?;
        let status = resp.status();
        if status.is_redirection() && status.as_u16() != 304 {
            let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
            return match location {
                Some(l) => Ok(Hop::Redirect(l)),
                None => Err(format!("HTTP {} without a Location to follow", status_text(status))),
            };
        }
        if !status.is_success() {
            return Err(format!("HTTP {}", status_text(status)));
        }
        if let Some(len) = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()) {
            if len > self.max_bytes {
                return Err(format!("download is {len} bytes, over the limit of {} (limits.max_image_bytes)", self.max_bytes));
            }
        }
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("download failed: {}", if e.kind() == std::io::ErrorKind::TimedOut { "timed out".to_string() } else { e.to_string() }))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(format!("download is over the limit of {} bytes (limits.max_image_bytes)", self.max_bytes));
        }
        Ok(Hop::Body(bytes))
    }
}

/// What one request gave.
enum Hop {
    Body(Vec<u8>),
    Redirect(String),
}

/// The client's error in plain words.
fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => "timed out".into(),
        other => other.to_string(),
    }
}

/// "404 Not Found": the code and its standard reason.
fn status_text(status: ureq::http::StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_redirect_targets_are_checked() {
        assert!(check_url("http://127.0.0.1:8080/a.jpg").is_ok());
        assert!(check_url("HTTPS://Example.com/a.jpg").is_ok());
        // `http:///etc/passwd` is `http://etc/passwd` by the URL standard: a host named "etc"
        assert_eq!(check_url("http:///etc/passwd").unwrap().host_str(), Some("etc"));
        for bad in ["http://", "https://:80/", "file:///etc/passwd", "ftp://h/x", "data:,x", "mailto:x", "about:blank", "http://[::1", "/a.jpg"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let from = Url::parse("http://127.0.0.1:1/dir/a.jpg").unwrap();
        assert_eq!(redirect_target(&from, "b.jpg").unwrap().as_str(), "http://127.0.0.1:1/dir/b.jpg");
        assert_eq!(redirect_target(&from, "/b.jpg").unwrap().as_str(), "http://127.0.0.1:1/b.jpg");
        assert_eq!(redirect_target(&from, "//other:2/c").unwrap().as_str(), "http://other:2/c");
        for bad in ["file:///etc/passwd", "data:image/png;base64,AAAA", "mailto:x", "about:blank", "javascript:alert(1)", "http://[::1", "http://"] {
            let e = redirect_target(&from, bad).expect_err(bad);
            assert!(e.starts_with("redirect"), "{bad}: {e}");
        }
        let long = format!("data:,{}", "x".repeat(100_000));
        assert!(redirect_target(&from, &long).unwrap_err().len() < 400);
    }
}
