//! The typed configuration tree. Every field has a default; see `conf/examples/` for a fully
//! commented file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfError, Errors};
use crate::events::EventsConfig;
use crate::upstream::UpstreamConfig;

/// `daihuo-edge` configuration. With no `[upstream]` the edge runs the origin in-process.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// On SIGTERM, how long in-flight requests and publishes may take to finish, in ms.
    /// Default 10000.
    pub shutdown_grace_ms: u64,
    /// On SIGTERM, how long readiness (`/readyz`) reads 503 while everything keeps serving,
    /// before listeners close, in ms: long enough for a load balancer's health checks to
    /// take the box out (interval x unhealthy threshold). Default 0 (no balancer).
    pub drain_delay_ms: u64,
    /// SRT ingest from streamers' encoders.
    pub srt: SrtConfig,
    /// HTTPS (HTTP/1.1 and HTTP/2 over TLS) for viewers.
    pub https: HttpsConfig,
    /// HTTP/3 (QUIC) for viewers; shares the certificate of `[https]`.
    pub http3: Http3Config,
    /// Plain HTTP, meant for loopback players and local tools.
    pub http: HttpConfig,
    /// Metrics and health checks.
    pub admin: AdminConfig,
    /// The in-memory object cache in front of the origin.
    pub cache: CacheConfig,
    /// Origins to relay ingest to and pull playback from; none: the origin runs in-process.
    pub upstream: UpstreamConfig,
    /// LL-HLS packaging of the embedded origin.
    pub hls: HlsConfig,
    /// The transcoding ladder of the embedded origin.
    pub transcode: TranscodeConfig,
    /// When to suggest adding or removing capacity.
    pub scale: ScaleConfig,
    /// Viewer events: intake limits, like merging, durable state.
    pub events: EventsConfig,
    /// Who may watch.
    pub playback: PlaybackConfig,
    /// What one viewer client may take of the HTTPS, HTTP/3 and plain HTTP listeners.
    pub limits: LimitsConfig,
    /// Who the client is behind load balancers and proxies, and how per-address limits
    /// group clients.
    pub clients: ClientsConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Limits of the viewer listeners (new connections get new values on reload).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Until a request's head has fully arrived, from the connection's start or the end of the
    /// previous response, ms (slowloris, silent and idle keep-alive connections are cut here;
    /// the TLS handshake gets as long). Default 10000.
    pub header_timeout_ms: u64,
    /// Until a request's body has fully arrived, ms (408 after). Default 10000.
    pub body_timeout_ms: u64,
    /// Largest request head, bytes. Default 16384.
    pub max_header_bytes: usize,
    /// Concurrent requests of one HTTP/2 or HTTP/3 connection. Default 100.
    pub max_streams_per_connection: u32,
    /// An HTTP/2 or HTTP/3 connection with no traffic either way this long is closed, ms
    /// (an idle HTTP/1.1 connection gets `header_timeout_ms`). Default 30000.
    pub idle_timeout_ms: u64,
    /// Open connections (TCP, and QUIC once the address is validated) from one IP address
    /// (0: no cap). Default 256.
    pub max_connections_per_ip: usize,
    /// A response write that makes no progress this long (a client that stopped reading:
    /// slow-read) ends its connection (HTTP/1.1, HTTP/2) or its stream (HTTP/3), ms.
    /// Default 30000.
    pub send_timeout_ms: u64,
    /// QUIC connections open or handshaking above which a new client must first prove its
    /// address with a Retry (one more round trip), so a flood of spoofed Initial packets
    /// costs no handshakes. 0: every client. Default 1000.
    pub quic_retry_above: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            max_header_bytes: 16_384,
            max_streams_per_connection: 100,
            idle_timeout_ms: 30_000,
            max_connections_per_ip: 256,
            send_timeout_ms: 30_000,
            quic_retry_above: 1000,
        }
    }
}

impl LimitsConfig {
    fn validate(&self, e: &mut Errors) {
        for (key, ms) in [
            ("limits.header_timeout_ms", self.header_timeout_ms),
            ("limits.body_timeout_ms", self.body_timeout_ms),
            ("limits.idle_timeout_ms", self.idle_timeout_ms),
            ("limits.send_timeout_ms", self.send_timeout_ms),
        ] {
            e.check(
                (100..=600_000).contains(&ms),
                key,
                format!("{ms} is outside 100..=600000"),
            );
        }
        e.check(
            (1024..=1024 * 1024).contains(&self.max_header_bytes),
            "limits.max_header_bytes",
            "must be 1024 to 1048576",
        );
        e.check(
            (1..=10_000).contains(&self.max_streams_per_connection),
            "limits.max_streams_per_connection",
            "must be 1 to 10000",
        );
    }
}

/// Where viewers' addresses come from behind balancers and proxies (all applied on reload,
/// to new connections).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientsConfig {
    /// L4 load balancers (addresses or CIDR ranges, `10.0.0.0/24`) whose TCP connections to
    /// the HTTPS and plain HTTP listeners start with a PROXY protocol header (v1 or v2)
    /// naming the client; a connection from them without one is closed. Default: none.
    pub proxy_protocol: Vec<String>,
    /// HTTP proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed: the
    /// client is the last address in it that is not such a proxy. From anyone else the header
    /// is ignored. Default: none.
    pub trusted_proxies: Vec<String>,
    /// IPv6 clients count against per-address limits (connections per IP, events per client)
    /// by this many leading bits, so one subscriber's /64 is one client. Default 64.
    pub ipv6_prefix: u8,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        Self {
            proxy_protocol: Vec::new(),
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
        }
    }
}

impl ClientsConfig {
    /// `clients.proxy_protocol` as networks (entries that do not parse are left out;
    /// validation reports them).
    pub fn proxy_protocol_nets(&self) -> Vec<ipnet::IpNet> {
        self.proxy_protocol.iter().filter_map(|s| net(s)).collect()
    }

    /// `clients.trusted_proxies` as networks.
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies.iter().filter_map(|s| net(s)).collect()
    }

    fn validate(&self, e: &mut Errors) {
        for (key, list) in [
            ("clients.proxy_protocol", &self.proxy_protocol),
            ("clients.trusted_proxies", &self.trusted_proxies),
        ] {
            for (i, s) in list.iter().enumerate() {
                e.check(
                    net(s).is_some(),
                    &format!("{key}[{i}]"),
                    format!("{s:?} is not an IP address or CIDR range (10.0.0.0/8, 2001:db8::/32)"),
                );
            }
        }
        e.check(
            (16..=128).contains(&self.ipv6_prefix),
            "clients.ipv6_prefix",
            format!("{} is outside 16..=128", self.ipv6_prefix),
        );
    }
}

/// An address (a one-address network) or a CIDR range.
fn net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Playback authorization (off by default).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PlaybackConfig {
    /// Require a signed token for everything under `/live/ROOM/`: `?token=v1.EXPIRY.HEX` or
    /// the `daihuo_token` cookie. A playlist asked for with `?token=` carries it on every URI
    /// it lists, for players that send no cookies (a cross-origin hls.js), and its answer
    /// also sets the cookie, scoped to the room, for those that do. HEX is
    /// HMAC-SHA256(secret, "play:/live/ROOM/:EXPIRY"). Expired or tampered tokens get 403.
    pub signed: bool,
    /// Signing secrets (32+ characters); any verifies, so keys rotate by overlap on reload.
    pub secrets: Vec<String>,
    /// Web origins (`https://shop.example`, scheme, host and port as a browser writes them)
    /// whose pages may call the edge with credentials (cookies): their requests get
    /// `Access-Control-Allow-Origin: ORIGIN` and `Access-Control-Allow-Credentials: true`.
    /// Every other origin gets `*`, which is enough for players that send no cookies (the
    /// playback token then travels in the query, see `signed`).
    pub cors_origins: Vec<String>,
}

impl PlaybackConfig {
    fn validate(&self, e: &mut Errors) {
        e.secrets(
            "playback.secrets",
            &self.secrets,
            self.signed.then_some("playback.signed = true"),
        );
        for (i, o) in self.cors_origins.iter().enumerate() {
            e.check(
                is_web_origin(o),
                &format!("playback.cors_origins[{i}]"),
                "an origin is `https://HOST` or `http://HOST`, with an optional `:PORT` and \
                 nothing after it (no path, no trailing slash)",
            );
        }
    }
}

/// Whether `s` is a serialized web origin: `http(s)://HOST[:PORT]`, no path, no credentials.
fn is_web_origin(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
}

/// `daihuo-origin` configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    /// On SIGTERM, how long in-flight requests and publishes may take to finish, in ms.
    /// Default 10000.
    pub shutdown_grace_ms: u64,
    /// On SIGTERM, how long readiness (`/readyz`) reads 503 while everything keeps serving,
    /// before listeners close, in ms: long enough for a load balancer's health checks to
    /// take the box out (interval x unhealthy threshold). Default 0 (no balancer).
    pub drain_delay_ms: u64,
    /// SRT ingest (from edges or encoders directly).
    pub srt: SrtConfig,
    /// The origin HTTP API that edges pull from.
    pub http: OriginHttpConfig,
    /// Metrics and health checks.
    pub admin: AdminConfig,
    /// LL-HLS packaging.
    pub hls: HlsConfig,
    /// The transcoding ladder.
    pub transcode: TranscodeConfig,
    /// When to suggest adding or removing capacity.
    pub scale: ScaleConfig,
    /// Viewer events: intake limits, like merging, durable state.
    pub events: EventsConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            shutdown_grace_ms: DEFAULT_GRACE_MS,
            drain_delay_ms: 0,
            srt: SrtConfig::default(),
            https: HttpsConfig::default(),
            http3: Http3Config::default(),
            http: HttpConfig::default(),
            admin: AdminConfig::default(),
            cache: CacheConfig::default(),
            upstream: UpstreamConfig::default(),
            hls: HlsConfig::default(),
            transcode: TranscodeConfig::default(),
            scale: ScaleConfig::default(),
            events: EventsConfig::default(),
            playback: PlaybackConfig::default(),
            limits: LimitsConfig::default(),
            clients: ClientsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            shutdown_grace_ms: DEFAULT_GRACE_MS,
            drain_delay_ms: 0,
            srt: SrtConfig::default(),
            http: OriginHttpConfig::default(),
            admin: AdminConfig::default(),
            hls: HlsConfig::default(),
            transcode: TranscodeConfig::default(),
            scale: ScaleConfig::default(),
            events: EventsConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// Default drain grace period: 10 s (systemd's TimeoutStopSec leaves room above it).
const DEFAULT_GRACE_MS: u64 = 10_000;

/// Thresholds of the scale hint (`daihuo_scale_hint`, and `/readyz`'s detail line): scale
/// out above either "out" mark, in below both "in" marks (the field's rule of thumb), hold
/// between. CPU is this process's share of all cores over the last 5 s.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleConfig {
    /// Open client connections above which to add capacity. Default 5000.
    pub out_connections: u64,
    /// CPU percent above which to add capacity. Default 70.
    pub out_cpu_percent: u8,
    /// Open client connections below which capacity can go (with CPU below its mark).
    /// Default 1000.
    pub in_connections: u64,
    /// CPU percent below which capacity can go (with connections below theirs). Default 30.
    pub in_cpu_percent: u8,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            out_connections: 5000,
            out_cpu_percent: 70,
            in_connections: 1000,
            in_cpu_percent: 30,
        }
    }
}

impl ScaleConfig {
    fn validate(&self, e: &mut Errors) {
        e.check(
            self.in_connections < self.out_connections,
            "scale.in_connections",
            "must be below scale.out_connections",
        );
        e.check(
            self.in_cpu_percent < self.out_cpu_percent && self.out_cpu_percent <= 100,
            "scale.in_cpu_percent",
            "must be below scale.out_cpu_percent, itself at most 100",
        );
    }
}

/// SRT listener settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrtConfig {
    /// UDP address the SRT listener binds. Default `[::]:9000`: IPv6 and IPv4 encoders on one
    /// socket (`0.0.0.0:9000` for IPv4 only).
    pub listen: SocketAddr,
    /// Receiver latency in milliseconds (SRT `latency`): how long lost packets may be
    /// retransmitted before they are given up. Default 120.
    pub latency_ms: u64,
    /// Optional passphrase (10 to 79 characters) required from publishers; enables AES with
    /// the key length the publisher chooses (16, 24 or 32 bytes: AES-128, -192 or -256;
    /// libsrt's default is 16).
    pub passphrase: Option<String>,
    /// Per-room passphrases under `[srt.passphrases]` (`room = "passphrase"`), which replace
    /// `passphrase` for their room; a room not listed uses `passphrase` (or none).
    pub passphrases: std::collections::BTreeMap<String, String>,
    /// Most streams published at once; further publishers are refused. Default 64.
    pub max_streams: usize,
    /// Who may publish: `open` (anyone who reaches the port; default) or `key` (a stream key
    /// of the room or a signed publish token in the stream id's `s=`, e.g.
    /// `#!::r=live/ROOM,m=publish,s=KEY`). Applies to new publishers on reload.
    pub publish_auth: PublishAuth,
    /// Per-room stream keys (`room = "key"`, at least 16 characters), under
    /// `[srt.stream_keys]`.
    pub stream_keys: std::collections::BTreeMap<String, String>,
    /// Secrets (at least 32 characters) that sign publish tokens `v1.EXPIRY.HEX`, where HEX is
    /// HMAC-SHA256(secret, "publish:ROOM:EXPIRY") and EXPIRY a Unix time in seconds. Any of
    /// them verifies, so a new secret can be added before the old one is removed.
    pub publish_secrets: Vec<String>,
    /// Whether an authorized publisher may take over a room that is already live: the
    /// current publisher's session is ended and the new one's accepted (an encoder restarted
    /// on another machine, say). Default false: the second publisher is refused (SRT reject
    /// 2409). Needs `publish_auth = "key"`, so that only the room's key holders can do it.
    /// With origins, an edge's relay carries this to the origin, which lets the newer publish
    /// replace one relayed by another edge when its own listener requires a passphrase.
    pub takeover: bool,
    /// Optional HTTP hook asked before each publish (after the key check): a POST of
    /// `{"room", "user", "key", "peer"}` as JSON to this `http://` URL. A 2xx answer allows
    /// the publish; any other answer, no answer within `on_publish_timeout_ms`, or an
    /// unreachable hook refuses it (SRT reject 2403), so a broken hook fails closed. At most
    /// 32 calls are in flight per listener; attempts beyond that are refused (2402).
    pub on_publish: Option<String>,
    /// How long the hook may take, in ms. Default 1000 (encoders give up on a handshake after
    /// about 3 s).
    pub on_publish_timeout_ms: u64,
    /// Receive buffer of the SRT UDP socket, in bytes; every publisher on the port shares it,
    /// and what arrives while it is full is dropped (and retransmitted, if latency allows).
    /// Default 8 MiB: about 0.7 s of 100 Mbit/s of ingest. The kernel caps it at
    /// `net.core.rmem_max` (212,992 on a stock Debian); the daemon logs when it got less and
    /// the sysctl to raise the cap. 65,536 to 268,435,456; a change needs a restart.
    pub udp_recv_buffer_bytes: usize,
}

/// Who may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PublishAuth {
    #[default]
    Open,
    Key,
}

impl Default for SrtConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 9000)),
            latency_ms: 120,
            passphrase: None,
            max_streams: 64,
            publish_auth: PublishAuth::Open,
            stream_keys: std::collections::BTreeMap::new(),
            publish_secrets: Vec::new(),
            passphrases: std::collections::BTreeMap::new(),
            takeover: false,
            on_publish: None,
            on_publish_timeout_ms: 1000,
            udp_recv_buffer_bytes: 8 << 20,
        }
    }
}

/// HTTPS listener for viewers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpsConfig {
    /// TCP address. Default `[::]:8443`: IPv6 and IPv4 on one socket (`0.0.0.0:8443` for
    /// IPv4 only; a specific IPv6 address binds IPv6 only).
    pub listen: SocketAddr,
    /// PEM certificate chain. When neither `cert` nor `key` is set, a self-signed certificate
    /// for `localhost` is generated at start.
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    pub key: Option<PathBuf>,
    /// Whether to serve HTTPS at all. Default true.
    pub enabled: bool,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 8443)),
            cert: None,
            key: None,
            enabled: true,
        }
    }
}

/// HTTP/3 listener for viewers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http3Config {
    /// UDP address. Default `[::]:8443`, dual-stack like `https.listen` (same port number as
    /// HTTPS, as `Alt-Svc` advertises).
    pub listen: SocketAddr,
    /// Whether to serve HTTP/3. Default true.
    pub enabled: bool,
    /// QUIC endpoints on the port (SO_REUSEPORT, the kernel spreads clients over them by
    /// address), each with its own receive loop: 0 is one per core. Default 1. One endpoint
    /// receives for every connection (the connections themselves encrypt and send in
    /// parallel); that loop was 2.5% of the edge's HTTP/3 CPU under a rehearsal, so one
    /// endpoint keeps up with dozens of cores of viewers. With more than one, a viewer whose
    /// address changes (NAT rebinding, a phone changing networks) may land on another
    /// endpoint and reconnect instead of migrating.
    pub endpoints: usize,
}

impl Default for Http3Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 8443)),
            enabled: true,
            endpoints: 1,
        }
    }
}

impl Http3Config {
    /// How many endpoints to run on a box with `cores` cores.
    pub fn endpoint_count(&self, cores: usize) -> usize {
        match self.endpoints {
            0 => cores.max(1),
            n => n,
        }
    }
}

/// Plain-HTTP listener (no TLS).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// TCP address. Default `127.0.0.1:8080`: loopback only, for local players.
    pub listen: SocketAddr,
    /// Whether to serve plain HTTP. Default true.
    pub enabled: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            enabled: true,
        }
    }
}

/// The origin's API (what edges pull playback from): HTTPS on TCP and HTTP/3 on UDP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginHttpConfig {
    /// Address, TCP for HTTPS and UDP for HTTP/3. Default `[::]:8081`: IPv6 and IPv4 on one
    /// socket (`0.0.0.0:8081` for IPv4 only).
    pub listen: SocketAddr,
    /// PEM certificate chain edges verify (their `upstream.ca`). When neither `cert` nor
    /// `key` is set, a self-signed certificate for `localhost` is generated at start.
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    pub key: Option<PathBuf>,
    /// PEM file of the CA(s) edges' client certificates must chain to (their `upstream.cert`).
    /// When set, every connection to this API, HTTPS and HTTP/3, must present such a
    /// certificate: without one, no events, no feed and no media. Unset (the default): any
    /// host that reaches the port is served, so keep it off networks other than the edges'.
    pub client_ca: Option<PathBuf>,
    /// Whether to serve HTTP/3 on the same port (UDP). Default true.
    pub http3: bool,
}

impl Default for OriginHttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 8081)),
            cert: None,
            key: None,
            client_ca: None,
            http3: true,
        }
    }
}

/// Internal listener for `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// TCP address. Default `127.0.0.1:9100`.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
        }
    }
}

/// The edge's object cache.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Upper bound of cached media bytes (init segments, parts, segments). Default 512 MiB.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

/// LL-HLS packaging.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Segment target duration in milliseconds: segments start at the first IDR of each slot
    /// of this length on the stream's timeline.
    /// Default 2000.
    pub segment_target_ms: u64,
    /// Partial segment target in milliseconds. Default 334 (1/3 s).
    pub part_target_ms: u64,
    /// Complete segments listed in each media playlist. Default 10.
    pub window_segments: usize,
    /// How long a stream that ended keeps answering (its playlists with `EXT-X-ENDLIST`, its
    /// window's media) before the room is forgotten, in seconds: players still on it play
    /// out, and an encoder that reconnects within it goes on with the same numbering.
    /// Default 60.
    pub ended_linger_s: u64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            segment_target_ms: 2000,
            part_target_ms: 334,
            window_segments: 10,
            ended_linger_s: 60,
        }
    }
}

impl HlsConfig {
    /// Segment target as a duration.
    pub fn segment_target(&self) -> Duration {
        Duration::from_millis(self.segment_target_ms)
    }

    /// Part target as a duration.
    pub fn part_target(&self) -> Duration {
        Duration::from_millis(self.part_target_ms)
    }

    fn validate(&self, e: &mut Errors) {
        e.check(
            (500..=10_000).contains(&self.segment_target_ms),
            "hls.segment_target_ms",
            format!("{} is outside 500..=10000", self.segment_target_ms),
        );
        e.check(
            (100..=2000).contains(&self.part_target_ms),
            "hls.part_target_ms",
            format!("{} is outside 100..=2000", self.part_target_ms),
        );
        e.check(
            self.part_target_ms < self.segment_target_ms,
            "hls.part_target_ms",
            "must be shorter than hls.segment_target_ms",
        );
        e.check(
            (3..=100).contains(&self.window_segments),
            "hls.window_segments",
            format!("{} is outside 3..=100", self.window_segments),
        );
        e.check(
            (1..=86_400).contains(&self.ended_linger_s),
            "hls.ended_linger_s",
            format!("{} is outside 1..=86400", self.ended_linger_s),
        );
    }
}

/// Which encoder backend the ladder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    /// NVENC when a working NVIDIA encoder is found at start, software otherwise.
    #[default]
    Auto,
    /// NVENC or refuse to start.
    Nvenc,
    /// FFmpeg's libx264.
    Software,
    /// No transcoding: every source track is served as it arrives.
    Off,
}

/// The transcoding ladder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// `auto`, `nvenc`, `software` or `off`. Default `auto`.
    pub encoder: Encoder,
    /// Encoder threads per rung for software encoding (0 = let the encoder decide).
    pub threads: usize,
    /// The rungs, highest first. Rungs taller than the source are skipped (never upscale).
    /// Earlier rungs have priority: under overload the last remaining rung is shed first.
    pub rungs: Vec<RungConfig>,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        let rung = |name: &str, width, height, bitrate, max_bitrate| RungConfig {
            name: name.to_string(),
            width,
            height,
            bitrate,
            max_bitrate,
            ..RungConfig::default()
        };
        Self {
            encoder: Encoder::Auto,
            threads: 0,
            rungs: vec![
                rung("1080p", 1920, 1080, 4_500_000, 5_400_000),
                rung("720p", 1280, 720, 2_500_000, 3_000_000),
                rung("480p", 854, 480, 1_000_000, 1_200_000),
            ],
        }
    }
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RungConfig {
    /// Rendition name in URLs (`/live/ROOM/NAME/index.m3u8`): 1-64 of A-Z a-z 0-9 _ -.
    pub name: String,
    /// Output size in pixels (even numbers).
    pub width: u16,
    pub height: u16,
    /// Target bitrate in bits per second.
    pub bitrate: u32,
    /// Peak bitrate in bits per second (VBV); at least `bitrate`.
    pub max_bitrate: u32,
    /// H.264 profile: `baseline`, `main` or `high`.
    pub profile: String,
    /// x264 preset (`ultrafast` ... `veryslow`); NVENC uses the nearest preset.
    pub preset: String,
    /// Serve the source untouched on this rung when it fits (no encode).
    pub copy: bool,
}

impl Default for RungConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            width: 0,
            height: 0,
            bitrate: 0,
            max_bitrate: 0,
            profile: "high".into(),
            preset: "veryfast".into(),
            copy: false,
        }
    }
}

const PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

impl TranscodeConfig {
    fn validate(&self, e: &mut Errors) {
        if self.encoder != Encoder::Off {
            e.check(
                !self.rungs.is_empty(),
                "transcode.rungs",
                "at least one rung is needed",
            );
        }
        e.check(self.threads <= 64, "transcode.threads", "at most 64");
        for (i, r) in self.rungs.iter().enumerate() {
            let key = |field: &str| format!("transcode.rungs[{i}].{field}");
            let name_ok = (1..=64).contains(&r.name.len())
                && r.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            e.check(
                name_ok,
                &key("name"),
                format!("{:?} must be 1 to 64 of A-Z a-z 0-9 _ -", r.name),
            );
            e.check(
                r.name != "audio",
                &key("name"),
                "\"audio\" is the audio rendition's name",
            );
            if self.rungs[..i].iter().any(|o| o.name == r.name) {
                e.push(
                    &key("name"),
                    format!("{:?} is used by an earlier rung", r.name),
                );
            }
            if r.copy {
                continue;
            }
            for (field, v) in [("width", r.width), ("height", r.height)] {
                e.check(
                    (16..=4096).contains(&v) && v % 2 == 0,
                    &key(field),
                    format!("{v} must be an even number in 16..=4096"),
                );
            }
            e.check(
                r.bitrate >= 50_000,
                &key("bitrate"),
                "must be at least 50000 bit/s",
            );
            e.check(
                r.max_bitrate >= r.bitrate,
                &key("max_bitrate"),
                "must be at least the rung's bitrate",
            );
            e.check(
                matches!(r.profile.as_str(), "baseline" | "main" | "high"),
                &key("profile"),
                format!("{:?} is not baseline, main or high", r.profile),
            );
            e.check(
                PRESETS.contains(&r.preset.as_str()),
                &key("preset"),
                format!(
                    "{:?} is not an x264 preset ({})",
                    r.preset,
                    PRESETS.join(", ")
                ),
            );
        }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `info,origin=debug`. `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Checks a table keyed by room (`[srt.stream_keys]`, `[srt.passphrases]`): valid room names,
/// and each value by `value`.
fn check_rooms(
    e: &mut Errors,
    table: &str,
    rooms: &std::collections::BTreeMap<String, String>,
    value: impl Fn(&str) -> Result<(), &'static str>,
) {
    for (room, v) in rooms {
        let path = format!("{table}.{room}");
        e.check(
            crate::valid_room(room),
            &path,
            "the room must be 1 to 64 of A-Z a-z 0-9 _ -",
        );
        if let Err(why) = value(v) {
            e.check(false, &path, why);
        }
    }
}

impl SrtConfig {
    fn validate(&self, e: &mut Errors) {
        e.check(
            self.latency_ms <= 10_000,
            "srt.latency_ms",
            format!("{} is above 10000", self.latency_ms),
        );
        e.check(
            (65_536..=268_435_456).contains(&self.udp_recv_buffer_bytes),
            "srt.udp_recv_buffer_bytes",
            format!(
                "{} is outside 65536 to 268435456",
                self.udp_recv_buffer_bytes
            ),
        );
        if let Some(p) = &self.passphrase {
            e.check(
                (10..=79).contains(&p.chars().count()),
                "srt.passphrase",
                "must be 10 to 79 characters (SRT's limits)",
            );
        }
        check_rooms(e, "srt.passphrases", &self.passphrases, |p| {
            (10..=79)
                .contains(&p.chars().count())
                .then_some(())
                .ok_or("must be 10 to 79 characters (SRT's limits)")
        });
        e.check(
            !self.takeover || self.publish_auth == PublishAuth::Key,
            "srt.takeover",
            "needs publish_auth = \"key\" (else anyone could take a live room)",
        );
        if let Some(url) = &self.on_publish {
            if let Err(why) = crate::hook_url(url) {
                e.check(false, "srt.on_publish", why);
            }
        }
        e.check(
            (50..=10_000).contains(&self.on_publish_timeout_ms),
            "srt.on_publish_timeout_ms",
            format!("{} is outside 50..=10000", self.on_publish_timeout_ms),
        );
        e.check(
            self.max_streams > 0,
            "srt.max_streams",
            "must be at least 1",
        );
        check_rooms(e, "srt.stream_keys", &self.stream_keys, |key| {
            (key.len() >= 16 && key.bytes().all(|b| b.is_ascii_graphic() && b != b','))
                .then_some(())
                .ok_or("keys are at least 16 printable characters, no commas")
        });
        for (i, secret) in self.publish_secrets.iter().enumerate() {
            e.check(
                secret.len() >= 32,
                &format!("srt.publish_secrets[{i}]"),
                "secrets are at least 32 characters",
            );
        }
        if self.publish_auth == PublishAuth::Key {
            e.check(
                !self.stream_keys.is_empty() || !self.publish_secrets.is_empty(),
                "srt.publish_auth",
                "\"key\" needs srt.stream_keys or srt.publish_secrets",
            );
        }
    }
}

impl EdgeConfig {
    /// Checks everything the types cannot; returns every problem with its key path.
    pub fn validate(&self) -> Result<(), ConfError> {
        let mut e = Errors::default();
        check_grace(self.shutdown_grace_ms, self.drain_delay_ms, &mut e);
        self.srt.validate(&mut e);
        self.hls.validate(&mut e);
        self.transcode.validate(&mut e);
        self.scale.validate(&mut e);
        self.events.validate(&mut e);
        self.upstream.validate(&mut e);
        self.playback.validate(&mut e);
        self.limits.validate(&mut e);
        self.clients.validate(&mut e);
        check_cert_pair("https", &self.https.cert, &self.https.key, &mut e);
        e.check(
            self.cache.max_bytes >= 1024 * 1024,
            "cache.max_bytes",
            "must be at least 1 MiB (1048576)",
        );
        let mut tcp = vec![("admin.listen", self.admin.listen)];
        if self.https.enabled {
            tcp.push(("https.listen", self.https.listen));
        }
        if self.http.enabled {
            tcp.push(("http.listen", self.http.listen));
        }
        check_distinct(&tcp, &mut e);
        let mut udp = vec![("srt.listen", self.srt.listen)];
        if self.http3.enabled {
            udp.push(("http3.listen", self.http3.listen));
        }
        check_distinct(&udp, &mut e);
        e.check(
            self.http3.endpoints <= 1024,
            "http3.endpoints",
            "must be at most 1024 (0: one per core)",
        );
        e.finish()
    }
}

impl OriginConfig {
    /// Checks everything the types cannot; returns every problem with its key path.
    pub fn validate(&self) -> Result<(), ConfError> {
        let mut e = Errors::default();
        check_grace(self.shutdown_grace_ms, self.drain_delay_ms, &mut e);
        self.srt.validate(&mut e);
        self.hls.validate(&mut e);
        self.transcode.validate(&mut e);
        self.scale.validate(&mut e);
        self.events.validate(&mut e);
        check_cert_pair("http", &self.http.cert, &self.http.key, &mut e);
        if let Some(ca) = &self.http.client_ca {
            e.check(
                ca.is_file(),
                "http.client_ca",
                format!("{} is not a readable file", ca.display()),
            );
        }
        check_distinct(
            &[
                ("admin.listen", self.admin.listen),
                ("http.listen", self.http.listen),
            ],
            &mut e,
        );
        if self.http.http3 {
            check_distinct(
                &[
                    ("srt.listen", self.srt.listen),
                    ("http.listen", self.http.listen),
                ],
                &mut e,
            );
        }
        e.finish()
    }
}

fn check_grace(ms: u64, delay_ms: u64, e: &mut Errors) {
    e.check(
        (100..=600_000).contains(&ms),
        "shutdown_grace_ms",
        format!("{ms} is outside 100..=600000"),
    );
    e.check(
        delay_ms <= 300_000,
        "drain_delay_ms",
        format!("{delay_ms} is over 300000"),
    );
}

/// A certificate and its key come together, and both must be readable files.
pub(crate) fn check_cert_pair(
    section: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    e: &mut Errors,
) {
    let (cert_key, key_key) = (format!("{section}.cert"), format!("{section}.key"));
    match (cert, key) {
        (Some(_), None) => e.push(&key_key, format!("required when {cert_key} is set")),
        (None, Some(_)) => e.push(&cert_key, format!("required when {key_key} is set")),
        (Some(cert), Some(key)) => {
            e.check(
                cert.is_file(),
                &cert_key,
                format!("{} is not a readable file", cert.display()),
            );
            e.check(
                key.is_file(),
                &key_key,
                format!("{} is not a readable file", key.display()),
            );
        }
        (None, None) => {}
    }
}

/// Two listeners of one protocol cannot share an address (port 0 means "any free port").
fn check_distinct(addrs: &[(&str, SocketAddr)], e: &mut Errors) {
    for (i, (key, addr)) in addrs.iter().enumerate() {
        if addr.port() == 0 {
            continue;
        }
        if let Some((other, _)) = addrs[..i].iter().find(|(_, a)| a == addr) {
            e.push(key, format!("{addr} is already used by {other}"));
        }
    }
}
