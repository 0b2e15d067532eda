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
    pub(crate) guard: Option<crate::vision::netguard::Guard>,
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
    let to = from.join(location).map_err(|e| {
        format!("redirect to {:?} refused: not a valid URL ({e})", shorten(location))
    })?;
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
        // under a guard, names are looked up (and checked) by the client's resolver, once per
        // connection: the client connects to the addresses that were checked
        let agent = match &limits.guard {
            Some(guard) => ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::default(),
                crate::vision::netguard::Resolver::new(guard.clone()),
            ),
            None => config.new_agent(),
        };
        Http { agent, max_bytes: limits.max_bytes, timeout: limits.timeout }
    }

    /// Downloads `url`, following up to `MAX_REDIRECTS` checked redirects, until `deadline` at
    /// the latest (and the client's own time-out); errors in plain words.
    pub fn get(&self, url: &str, deadline: Option<Instant>) -> Result<Vec<u8>, String> {
        let own = Instant::now() + self.timeout;
        let deadline = deadline.map_or(own, |d| d.min(own));
        let mut at = check_url(url)?;
        let mut seen = vec![at.clone()];
        loop {
            let Some(left) =
                deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
            else {
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
        let request = self.agent.get(url.as_str()).config().timeout_global(Some(left)).build();
        let resp = request.call().map_err(|e| match e {
            // the guard refused the address (its message says so)
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                io.to_string()
            }
            e => format!("download failed: {}", describe(e)),
        })?;
        let status = resp.status();
        if status.is_redirection() && status.as_u16() != 304 {
            let location =
                resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
            return match location {
                Some(l) => Ok(Hop::Redirect(l)),
                None => Err(format!("HTTP {} without a Location to follow", status_text(status))),
            };
        }
        if !status.is_success() {
            return Err(format!("HTTP {}", status_text(status)));
        }
        if let Some(len) = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            if len > self.max_bytes {
                return Err(format!(
                    "download is {len} bytes, over the limit of {} (limits.max_image_bytes)",
                    self.max_bytes
                ));
            }
        }
        let mut bytes = Vec::new();
        resp.into_body().into_reader().take(self.max_bytes + 1).read_to_end(&mut bytes).map_err(
            |e| {
                format!(
                    "download failed: {}",
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        "timed out".to_string()
                    } else {
                        e.to_string()
                    }
                )
            },
        )?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(format!(
                "download is over the limit of {} bytes (limits.max_image_bytes)",
                self.max_bytes
            ));
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
        for bad in [
            "http://",
            "https://:80/",
            "file:///etc/passwd",
            "ftp://h/x",
            "data:,x",
            "mailto:x",
            "about:blank",
            "http://[::1",
            "/a.jpg",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let from = Url::parse("http://127.0.0.1:1/dir/a.jpg").unwrap();
        assert_eq!(
            redirect_target(&from, "b.jpg").unwrap().as_str(),
            "http://127.0.0.1:1/dir/b.jpg"
        );
        assert_eq!(redirect_target(&from, "/b.jpg").unwrap().as_str(), "http://127.0.0.1:1/b.jpg");
        assert_eq!(redirect_target(&from, "//other:2/c").unwrap().as_str(), "http://other:2/c");
        for bad in [
            "file:///etc/passwd",
            "data:image/png;base64,AAAA",
            "mailto:x",
            "about:blank",
            "javascript:alert(1)",
            "http://[::1",
            "http://",
        ] {
            let e = redirect_target(&from, bad).expect_err(bad);
            assert!(e.starts_with("redirect"), "{bad}: {e}");
        }
        let long = format!("data:,{}", "x".repeat(100_000));
        assert!(redirect_target(&from, &long).unwrap_err().len() < 400);
    }

    /// A local server answering every request with a small body; counts the connections it got.
    fn counting_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret",
                );
            }
        });
        (port, hits)
    }

    #[test]
    fn a_name_that_rebinds_to_a_private_address_is_never_connected_to() {
        let (port, hits) = counting_server();
        let limits = |guard| HttpLimits {
            connect_timeout: Duration::from_millis(300),
            timeout: Duration::from_secs(2),
            max_bytes: 1000,
            guard: Some(guard),
        };
        // the attacker's DNS answers the check with a public address; the system resolver would
        // answer `localhost` with the loopback server. The client must connect to the address
        // that was checked, never look the name up again.
        let public = crate::vision::netguard::Guard::new(&[]).with_lookup(|netloc| {
            let port = netloc.rsplit(':').next().unwrap_or("80");
            Ok(vec![format!("198.51.100.7:{port}").parse().unwrap()])
        });
        let http = Http::new(&limits(public));
        assert!(http.get(&format!("http://localhost:{port}/a.jpg"), None).is_err());
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "connected to an address that was not checked"
        );
        // a name answered public, then private (a rebinding DNS): every connection is checked
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let rebinding = crate::vision::netguard::Guard::new(&[]).with_lookup(move |netloc| {
            let port = netloc.rsplit(':').next().unwrap_or("80");
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let ip = if n == 0 { "198.51.100.7" } else { "127.0.0.1" };
            Ok(vec![format!("{ip}:{port}").parse().unwrap()])
        });
        let http = Http::new(&limits(rebinding));
        let _ = http.get(&format!("http://rebind.example:{port}/a.jpg"), None);
        let e = http.get(&format!("http://rebind.example:{port}/a.jpg"), None).unwrap_err();
        assert!(e.contains("non-public") && e.contains("127.0.0.1"), "{e}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        // the same name allowed: fetched
        let allowed = crate::vision::netguard::Guard::new(&["rebind.example".to_string()])
            .with_lookup(|netloc| {
                Ok(vec![format!("127.0.0.1:{}", netloc.rsplit(':').next().unwrap())
                    .parse()
                    .unwrap()])
            });
        assert_eq!(
            Http::new(&limits(allowed))
                .get(&format!("http://rebind.example:{port}/a.jpg"), None)
                .unwrap(),
            b"secret"
        );
    }
}
