//! Fetching a job's input media over HTTP(S) without becoming an SSRF hole.
//!
//! # The threat
//!
//! The built-in processor downloads whatever URL a user typed as a job's input. Left unguarded,
//! that turns the server into a proxy into its own network: `http://127.0.0.1:5432/`,
//! `http://169.254.169.254/latest/meta-data/` (cloud credentials), `http://10.0.0.7/admin`, or a
//! public name whose DNS answer points at any of those — either from the start or only at the
//! moment of the download ("DNS rebinding"), or via a public URL that redirects inwards.
//!
//! # The design
//!
//! * [`Fetcher::check_url`] validates a URL without network I/O, at submit time and again before
//!   each download: http(s) only, a host, no `user:pass@`, and an IP-literal host must be public
//!   ([`is_public`]).
//! * Host *names* are checked where they are resolved. The guarded client has its own resolver
//!   that refuses a name if *any* of its addresses is not public, and the connection is made to
//!   exactly the addresses that resolver returned, so there is no window between check and connect
//!   for a rebinding answer to slip through.
//! * reqwest does not send IP-literal hosts through the resolver, so every redirect hop is checked
//!   by a redirect policy: at most [`MAX_REDIRECTS`] hops, http(s) only, and IP literals must be
//!   public. Host names on redirects go through the resolver like any other.
//! * Proxies from the environment (`HTTP_PROXY` …) are ignored: a proxy resolves names itself,
//!   out of the guard's sight.
//! * Trusted prefixes (the app's own sample clips and outputs on loopback) skip the address check
//!   but are fetched with no redirects followed, so they cannot be bounced elsewhere.
//! * `allow_private` switches the address check off (tests, LAN use); the hop limit stays.
//!
//! Error messages end up on the dashboard as a job's error text, so they are sentences for a
//! person and never contain the URL (URLs can carry signed tokens) nor the address a host resolved to (it
//! would map the server's private network for whoever reads the job's error) — at most the
//! host. The operator finds a refused address in the log.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncWriteExt;
use url::{Host, Url};

use crate::net_error::{Cause, NetworkFailure};

/// The User-Agent header of every request.
const USER_AGENT: &str = "reeltime-processor";

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most redirects followed for one input.
pub const MAX_REDIRECTS: usize = 5;

/// How the processor fetches inputs.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    /// Allow private, loopback, link-local etc. addresses (tests, LAN use).
    pub allow_private: bool,
    /// Largest input accepted, in bytes.
    pub max_bytes: u64,
    /// Whole-download timeout.
    pub timeout: Duration,
    /// URL prefixes (e.g. `http://127.0.0.1:3000/samples/`) that are fetched even though they
    /// are loopback: the app's own sample clips and outputs. Compared against the parsed,
    /// normalised URL ([`Url::as_str`]) with `starts_with`; such URLs are fetched with no
    /// redirects followed and without the address check.
    ///
    /// Each prefix that parses as a URL is normalised the same way first (so
    /// `http://127.0.0.1:3000` becomes `http://127.0.0.1:3000/` and cannot match port 30001);
    /// one that does not parse is ignored with a warning.
    pub trusted_prefixes: Vec<String>,
    /// Sent as a bearer credential to trusted URLs (the app's own files need one).
    pub own_key: Option<SecretString>,
}

/// Downloads inputs with the SSRF guard described in the [module documentation](self).
/// Cheap to clone; clones share their connection pools.
#[derive(Clone, Debug)]
pub struct Fetcher {
    /// For everything not trusted: guarded resolver and redirect policy, unless `allow_private`.
    guarded: reqwest::Client,
    /// For trusted prefixes: no guard, no redirects.
    trusted: reqwest::Client,
    own_key: Option<SecretString>,
    allow_private: bool,
    max_bytes: u64,
    /// Normalised, see [`FetchSettings::trusted_prefixes`].
    trusted_prefixes: Arc<[String]>,
}

/// Why an input could not be fetched. The `Display` texts are shown to people and never contain
/// the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is unusable: not a URL, a scheme other than http(s), no host, or credentials.
    #[error("{0}")]
    Invalid(String),
    /// The host is, or resolves to, an address that is not on the public internet. The
    /// message names the host (the submitter typed it, or a server they chose redirected to
    /// it) but never the address: the text is shown to every viewer, and the address would
    /// map the server's private network for them. [`FetchError::log_refusal`] gives it to the
    /// operator.
    #[error(
        "the input's host {host} resolves to a private, loopback or link-local address; the \
         built-in processor does not fetch those (set REELTIME_PROCESSOR_ALLOW_PRIVATE=true to \
         allow it)"
    )]
    Refused { host: String, address: IpAddr },
    /// A redirect that is not followed: too many hops or a scheme other than http(s).
    #[error("{0}")]
    Redirect(String),
    /// The server answered with a status other than 2xx.
    #[error("the input URL answered HTTP {0}")]
    Status(u16),
    /// The input is larger than [`FetchSettings::max_bytes`].
    #[error(
        "the input is larger than the {} limit (REELTIME_PROCESSOR_MAX_INPUT_MB)",
        limit_text(*max_bytes)
    )]
    TooLarge { max_bytes: u64 },
    /// Connecting or downloading took too long.
    #[error("the input took too long to download (the connection or the transfer timed out)")]
    Timeout,
    /// Any other failure to reach the server or read its answer: `plain` in plain words (the
    /// job's error), `detail` the technical chain of messages, hyper's and the resolver's,
    /// without the URL (the job's page shows it under "Technical detail"; see
    /// [`crate::net_error`]).
    #[error("{plain}")]
    Network { plain: &'static str, detail: String },
    /// The local file could not be written.
    #[error("the downloaded input could not be saved to a local file: {0}")]
    Io(#[from] std::io::Error),
}

impl FetchError {
    /// Tells the operator which address a refused host resolved to (the job's error does not).
    pub fn log_refusal(&self) {
        if let FetchError::Refused { host, address } = self {
            tracing::warn!(%host, %address, "refused to fetch an input from a non-public address");
        }
    }

    /// Whether trying again later may succeed: timeouts, network failures, 5xx and 429 answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Timeout | FetchError::Network { .. } => true,
            FetchError::Status(code) => *code >= 500 || *code == 429,
            FetchError::Invalid(_)
            | FetchError::Refused { .. }
            | FetchError::Redirect(_)
            | FetchError::TooLarge { .. }
            | FetchError::Io(_) => false,
        }
    }

    /// Classifies a reqwest error without letting its URL into the message. Refusals raised by
    /// the guarded resolver or the redirect policy are found in the error's source chain and
    /// reported as themselves.
    fn from_reqwest(err: reqwest::Error) -> FetchError {
        let mut source: Option<&(dyn StdError + 'static)> = Some(&err);
        while let Some(current) = source {
            if let Some(guard) = current.downcast_ref::<GuardError>() {
                return guard.clone().into();
            }
            source = current.source();
        }
        if err.is_timeout() {
            return FetchError::Timeout;
        }
        let NetworkFailure { cause, detail } = NetworkFailure::of(err);
        tracing::info!(%detail, "downloading an input failed");
        FetchError::Network {
            plain: plain_network_reason(cause),
            detail,
        }
    }

    /// The technical detail behind the plain message, for the job's page: the chain of
    /// messages of a network failure (never the URL, nor a refused address).
    pub fn technical(&self) -> Option<&str> {
        match self {
            FetchError::Network { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

/// What a network failure means for the person who submitted the job.
fn plain_network_reason(cause: Cause) -> &'static str {
    match cause {
        Cause::Dns => "the input URL's host could not be found: check the address",
        Cause::Refused => "the input URL's server refused the connection",
        Cause::Tls => "the input URL's server has an invalid or untrusted HTTPS certificate",
        Cause::Closed => {
            "the input URL's server closed the connection before the whole file arrived"
        }
        Cause::Unreachable => "the input URL's server cannot be reached from here",
        Cause::Timeout => {
            "the input took too long to download (the connection or the transfer timed out)"
        }
        Cause::Other => {
            "the input could not be downloaded because of a network error; try again later"
        }
    }
}

/// `max_bytes` as a person would write the limit.
fn limit_text(max_bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if max_bytes >= MB && max_bytes.is_multiple_of(MB) {
        format!("{} MB", max_bytes / MB)
    } else {
        format!("{max_bytes}-byte")
    }
}

/// A refusal by the guard inside reqwest (resolver or redirect policy). It travels through
/// reqwest's error as a source and is turned into a [`FetchError`] by [`FetchError::from_reqwest`].
#[derive(Clone, Debug, thiserror::Error)]
enum GuardError {
    #[error("{host} resolves to {address}, which is not a public address")]
    NotPublic { host: String, address: IpAddr },
    #[error("redirect to a {0}: URL")]
    Scheme(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
}

impl From<GuardError> for FetchError {
    fn from(err: GuardError) -> FetchError {
        match err {
            GuardError::NotPublic { host, address } => FetchError::Refused { host, address },
            GuardError::Scheme(scheme) => FetchError::Redirect(format!(
                "the input URL redirected to a {scheme}: URL; the built-in processor follows \
                 redirects to http and https URLs only"
            )),
            GuardError::TooManyRedirects => FetchError::Redirect(format!(
                "the input URL redirected more than {MAX_REDIRECTS} times; the built-in \
                 processor gives up after that"
            )),
        }
    }
}

/// Whether an address is on the public internet.
///
/// Not public: unspecified, loopback, private (10/8, 172.16/12, 192.168/16), shared CGNAT
/// 100.64/10, link-local 169.254/16, broadcast, multicast, documentation ranges, 0/8,
/// 192.0.0/24, benchmarking 198.18/15, reserved 240/4; IPv6: `::`, `::1`, unique-local
/// fc00::/7, link-local fe80::/10, deprecated site-local fec0::/10, multicast ff00::/8,
/// documentation 2001:db8::/32, discard-only 100::/64, local-use NAT64 64:ff9b:1::/48. IPv6
/// addresses that embed an IPv4 address — IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d`, NAT64 64:ff9b::/96 and 6to4 2002::/16 — are judged by that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let not_public = a == 0 // "this network", including 0.0.0.0
        || a == 10 // private
        || (a == 100 && (b & 0xc0) == 64) // shared address space (CGNAT), 100.64/10
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, including cloud metadata endpoints
        || (a == 172 && (b & 0xf0) == 16) // private, 172.16/12
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation, TEST-NET-1
        || (a == 192 && b == 168) // private
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, 198.18/15
        || (a == 198 && b == 51 && c == 100) // documentation, TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // documentation, TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !not_public
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = embedded_ipv4(ip) {
        return is_public_v4(v4);
    }
    let not_public = ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast, ff00::/8
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation, 2001:db8::/32
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only, 100::/64
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001); // local-use NAT64, 64:ff9b:1::/48
    !not_public
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) or 6to4
/// (2002::/16) address. `::` and `::1` count as IPv4-compatible, embedding 0.0.0.0 and 0.0.0.1,
/// which are not public either.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from_segments = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0; 6] || s[..6] == [0x0064, 0xff9b, 0, 0, 0, 0] {
        // IPv4-compatible ::a.b.c.d, or NAT64 64:ff9b::a.b.c.d.
        Some(from_segments(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(from_segments(s[1], s[2]))
    } else {
        None
    }
}

/// The address of an IP-literal host; `None` for a host name.
fn literal_address(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    }
}

/// Refuses a URL whose host is an IP literal that is not public. Host names pass: the guarded
/// resolver checks them when they are resolved.
fn check_literal_host(url: &Url) -> Result<(), GuardError> {
    match literal_address(url) {
        Some(address) if !is_public(address) => Err(GuardError::NotPublic {
            host: url.host_str().unwrap_or_default().to_owned(),
            address,
        }),
        _ => Ok(()),
    }
}

/// Refuses a redirect to anything but http(s).
fn check_redirect_scheme(url: &Url) -> Result<(), GuardError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(GuardError::Scheme(other.to_owned())),
    }
}

/// Whether a redirect may be followed by the guarded client: http(s) only, and an IP-literal
/// host must be public.
fn redirect_target_allowed(url: &Url) -> Result<(), GuardError> {
    check_redirect_scheme(url)?;
    check_literal_host(url)
}

/// The redirect policy of the non-trusted client: at most [`MAX_REDIRECTS`] hops to http(s)
/// URLs, and with `guard`, only to public IP literals.
fn redirect_policy(guard: bool) -> Policy {
    Policy::custom(move |attempt: Attempt| {
        // `previous` starts with the original URL, so its length is the number of hops so far.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(GuardError::TooManyRedirects);
        }
        let verdict = if guard {
            redirect_target_allowed(attempt.url())
        } else {
            check_redirect_scheme(attempt.url())
        };
        match verdict {
            Ok(()) => attempt.follow(),
            Err(err) => attempt.error(err),
        }
    })
}

/// A resolver that refuses a name if any of its addresses is not public. reqwest connects to
/// exactly the addresses returned here, so a rebinding DNS answer cannot sneak in between.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_public(name.as_str().to_owned()))
    }
}

/// Resolves `host` with the system resolver, failing with [`GuardError::NotPublic`] if any
/// address is not public.
async fn resolve_public(host: String) -> Result<Addrs, Box<dyn StdError + Send + Sync>> {
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
    if let Some(refused) = addrs.iter().find(|addr| !is_public(addr.ip())) {
        let address = refused.ip();
        return Err(Box::new(GuardError::NotPublic { host, address }));
    }
    Ok(Box::new(addrs.into_iter()))
}

impl Fetcher {
    /// Builds the two HTTP clients.
    pub fn new(settings: FetchSettings) -> Result<Fetcher, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(settings.timeout)
                .no_proxy()
        };
        let guarded = if settings.allow_private {
            builder().redirect(redirect_policy(false))
        } else {
            builder()
                .redirect(redirect_policy(true))
                .dns_resolver(Arc::new(PublicOnlyResolver))
        }
        .build()?;
        let trusted = builder().redirect(Policy::none()).build()?;
        let trusted_prefixes = settings
            .trusted_prefixes
            .iter()
            .filter_map(|prefix| match Url::parse(prefix) {
                Ok(url) => Some(url.as_str().to_owned()),
                Err(err) => {
                    tracing::warn!(%prefix, %err, "ignoring a trusted input prefix that is not a URL");
                    None
                }
            })
            .collect();
        Ok(Fetcher {
            guarded,
            trusted,
            own_key: settings.own_key,
            allow_private: settings.allow_private,
            max_bytes: settings.max_bytes,
            trusted_prefixes,
        })
    }

    /// Whether `url` starts with one of the trusted prefixes.
    fn is_trusted(&self, url: &Url) -> bool {
        self.trusted_prefixes
            .iter()
            .any(|prefix| url.as_str().starts_with(prefix.as_str()))
    }

    /// Validates a URL as an input at submit time, without network I/O: http or https only, a
    /// host is required, no userinfo (`user:pass@`), and an IP-literal host that is not public is
    /// refused unless `allow_private` or the URL is trusted. Host names are checked when they are
    /// resolved, by [`Fetcher::download`].
    pub fn check_url(&self, input: &str) -> Result<Url, FetchError> {
        let url = Url::parse(input.trim())
            .map_err(|err| FetchError::Invalid(format!("the input is not a valid URL ({err})")))?;
        match url.scheme() {
            "http" | "https" => {}
            "s3" => {
                return Err(FetchError::Invalid(
                    "the built-in processor fetches http(s) URLs only; s3:// inputs need Ittybit \
                     itself"
                        .to_owned(),
                ))
            }
            other => {
                return Err(FetchError::Invalid(format!(
                    "the input URL's scheme {other}: is not supported; the built-in processor \
                     fetches http and https URLs only"
                )))
            }
        }
        if url.host().is_none() {
            return Err(FetchError::Invalid("the input URL has no host".to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::Invalid(
                "the input URL contains a user name or password (user:pass@host), which the \
                 built-in processor does not accept"
                    .to_owned(),
            ));
        }
        if !self.allow_private && !self.is_trusted(&url) {
            check_literal_host(&url)?;
        }
        Ok(url)
    }

    /// Downloads `input` into the file `dest` (created or truncated), streaming, and returns the
    /// number of bytes written. `max_bytes` is enforced from Content-Length up front and while
    /// streaming; on any error after the file was created, the partial file is deleted.
    pub async fn download(&self, input: &str, dest: &Path) -> Result<u64, FetchError> {
        let downloaded = self.download_unlogged(input, dest).await;
        if let Err(err) = &downloaded {
            err.log_refusal();
        }
        downloaded
    }

    async fn download_unlogged(&self, input: &str, dest: &Path) -> Result<u64, FetchError> {
        let url = self.check_url(input)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let client = if self.is_trusted(&url) {
            &self.trusted
        } else {
            &self.guarded
        };
        let mut request = client.get(url.clone());
        if let Some(key) = self.own_key.as_ref().filter(|_| self.is_trusted(&url)) {
            // The app's own files need a credential: the processor's key (never sent
            // elsewhere: trusted URLs are fetched without following redirects).
            request = request.bearer_auth(key.expose_secret());
        }
        let mut response = request.send().await.map_err(FetchError::from_reqwest)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > self.max_bytes)
        {
            return Err(FetchError::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        let mut file = tokio::fs::File::create(dest).await?;
        let written = self.write_body(&mut response, &mut file).await;
        drop(file);
        match written {
            Ok(bytes) => {
                tracing::debug!(%host, bytes, "downloaded an input");
                Ok(bytes)
            }
            Err(err) => {
                if let Err(remove_err) = tokio::fs::remove_file(dest).await {
                    tracing::warn!(
                        path = %dest.display(),
                        %remove_err,
                        "could not delete a partly downloaded input"
                    );
                }
                Err(err)
            }
        }
    }

    /// Copies the body into `file`, counting bytes against `max_bytes`.
    async fn write_body(
        &self,
        response: &mut reqwest::Response,
        file: &mut tokio::fs::File,
    ) -> Result<u64, FetchError> {
        let mut written: u64 = 0;
        while let Some(chunk) = response.chunk().await.map_err(FetchError::from_reqwest)? {
            written = written.saturating_add(chunk.len() as u64);
            if written > self.max_bytes {
                return Err(FetchError::TooLarge {
                    max_bytes: self.max_bytes,
                });
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests;
