//! The plugin runtime both planes share: what a compiled plugin is, the
//! phases it runs in, the per-request context it reads and writes, the
//! resources that outlive a config swap, and the chain that picks which
//! instance of each plugin applies to a request and runs them in Kong's order.
//!
//! The data plane drives the phases (`rewrite`, `access`, `response`, `log`)
//! around its own proxying; the control plane only compiles, with
//! [`Resources::check_only`]. Nothing here does I/O: a plugin that needs a
//! socket or a file reaches it through a resource handle whose live
//! implementation the data plane provides.

mod chain;
mod context;
mod log_queue;
mod log_record;
mod resources;
mod script_call;
mod traces;

pub use chain::{ChainStep, PluginChain, PluginFailure, PluginInstance};
pub use context::{
    ByteCounts, ConsumerHeaders, ConsumerRef, CredentialRef, FailedTry, LogFacts, Replaced,
    RequestContext, ResponseHeaders, Timings, TlsFacts,
};
pub use log_queue::{HttpLogTarget, LogQueue, LogQueues, QueueSettings};
pub use log_record::{
    request_headers_json, response_headers_json, EntityJson, Latencies, LogRecord,
    DEFAULT_WORKSPACE_ID,
};
pub use resources::{
    ClusterPeers, LineSink, LogFiles, RedisConnector, RedisFailure, RedisReply, RedisScript,
    RedisServer, RedisTls, Resources, SharedSet,
};
pub use script_call::{bulk_string, ScriptCall};
pub use traces::{
    AttributeValue, FinishedSpan, OtlpEndpoint, SpanId, SpanKind, SpanSink, TraceExporters,
    TraceId, UNBOUNDED_EXPORTS,
};

use http::{HeaderMap, StatusCode};
use std::borrow::Cow;
use std::future::Future;

/// The phases of a request, in the order they run (kong-compat §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before routing; only global instances run here, as in Kong.
    Rewrite,
    /// After routing, before the upstream is contacted; may await I/O.
    Access,
    /// Kong's `header_filter`: the response head before its first byte leaves.
    Response,
    /// After the response is finished or the client went away.
    Log,
}

/// The set of phases a plugin implements, so a chain skips the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Phases(u8);

impl Phases {
    pub const NONE: Phases = Phases(0);
    pub const REWRITE: Phases = Phases(1);
    pub const ACCESS: Phases = Phases(2);
    pub const RESPONSE: Phases = Phases(4);
    pub const LOG: Phases = Phases(8);
    /// The log phase, reading the request and the response as they were sent
    /// (Kong's log record, a trace's attributes): the proxy then keeps the
    /// request headers, the response headers and the route's JSON for it. A
    /// plugin that only counts (prometheus) declares [`Phases::LOG`] and
    /// spares every request those copies.
    pub const LOG_RECORD: Phases = Phases(8 | 16);
    /// The log or response phase reads the request headers as a map after
    /// the upstream request took them (a trace's `traceparent`, `Host`,
    /// `User-Agent`): the proxy then sends a copy upstream. Without it, a
    /// chain that logs the record gets the request headers as rendered JSON
    /// and the map itself goes upstream.
    pub const REQUEST_HEADERS_AFTER_UPSTREAM: Phases = Phases(32);

    pub const fn with(self, other: Phases) -> Phases {
        Phases(self.0 | other.0)
    }

    pub const fn contains(self, phase: Phase) -> bool {
        let bit = match phase {
            Phase::Rewrite => 1,
            Phase::Access => 2,
            Phase::Response => 4,
            Phase::Log => 8,
        };
        self.0 & bit != 0
    }

    /// Whether the log phase reads the whole log record ([`Phases::LOG_RECORD`]).
    pub const fn reads_log_record(self) -> bool {
        self.0 & 16 != 0
    }

    /// Whether a plugin reads the request header map after the upstream
    /// request ([`Phases::REQUEST_HEADERS_AFTER_UPSTREAM`]).
    pub const fn reads_request_headers_after_upstream(self) -> bool {
        self.0 & 32 != 0
    }
}

/// The request protocol, as plugin and route `protocols` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Protocol::Http => 1,
            Protocol::Https => 2,
            Protocol::Grpc => 4,
            Protocol::Grpcs => 8,
        }
    }
}

/// A set of [`Protocol`]s, e.g. a plugin's or a route's `protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtocolSet(u8);

impl ProtocolSet {
    /// Builds the set from Kong protocol names; stream protocols (tcp, tls, udp…)
    /// have no HTTP meaning and are left out.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> ProtocolSet {
        let mut bits = 0;
        for name in names {
            bits |= match name.as_ref() {
                "http" => Protocol::Http.bit(),
                "https" => Protocol::Https.bit(),
                "grpc" => Protocol::Grpc.bit(),
                "grpcs" => Protocol::Grpcs.bit(),
                _ => 0,
            };
        }
        ProtocolSet(bits)
    }

    pub fn contains(self, protocol: Protocol) -> bool {
        self.0 & protocol.bit() != 0
    }
}

/// A plugin's verdict on a request. A 401, 403 or 429 is a decision, not an error.
#[derive(Debug)]
pub enum Decision {
    Continue,
    Respond(Rejection),
}

/// A response a plugin produces instead of proxying. Headers it needs on that
/// response (e.g. `WWW-Authenticate`) go in [`RequestContext::response_headers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    pub style: RejectionStyle,
}

/// Which of Kong's body generators renders the rejection (kong-compat §2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionStyle {
    /// `kong.response.error`: format by `Accept`, with `request_id`.
    Error,
    /// `kong.response.exit`: plain `{"message":…}` JSON.
    Exit,
    /// `kong.response.exit` with a table body: `message` is the JSON object
    /// text itself (e.g. jwt's `{"exp":"token expired"}`).
    ExitJson,
}

/// A plugin that could not do its work (a backend failed, a bug). The request
/// gets Kong's 500 `An unexpected error occurred`; the text goes to the log
/// with the plugin's name, never to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub Cow<'static, str>);

/// The response head as the `response` phase sees it: status and headers can
/// still change because nothing has been sent.
#[derive(Debug)]
pub struct ResponseHead<'a> {
    pub status: &'a mut StatusCode,
    pub headers: &'a mut HeaderMap,
}

/// What one compiled plugin does in each phase. Every method has a default that
/// does nothing; [`PluginRuntime::PHASES`] names the ones a plugin implements so
/// that a chain never calls the others.
pub trait PluginRuntime: Sized + Send + Sync + std::fmt::Debug + 'static {
    /// The phases this plugin implements.
    const PHASES: Phases;

    /// Runs before routing (global instances only).
    fn rewrite(&self, _ctx: &mut RequestContext) -> Decision {
        Decision::Continue
    }

    /// Runs after routing; may await a backend.
    fn access(
        &self,
        _ctx: &mut RequestContext,
    ) -> impl Future<Output = Result<Decision, PluginError>> + Send {
        std::future::ready(Ok(Decision::Continue))
    }

    /// Edits the response head before it is sent, for proxied and
    /// plugin-generated responses alike.
    fn response(&self, _ctx: &mut RequestContext, _head: ResponseHead<'_>) {}

    /// Runs once the response is finished (or the client left).
    fn log(&self, _ctx: &RequestContext) {}

    /// Whether this instance reads the request body in `access` (key-auth's
    /// `key_in_body`): the proxy then reads the body before the access phase
    /// and hands it over in [`RequestContext::body`].
    fn reads_body(&self) -> bool {
        false
    }
}

/// How a plugin's typed config becomes its runtime form.
pub trait CompilePlugin<Config>: PluginRuntime {
    fn compile(config: &Config, cx: &CompileContext<'_>) -> Result<Self, PluginCompileError>;
}

/// What a plugin's compile step sees: the whole config (consumers and their
/// credentials), the instance being compiled, and the long-lived resources.
#[derive(Debug, Clone, Copy)]
pub struct CompileContext<'a> {
    pub config: &'a crate::Config,
    pub instance: &'a crate::Plugin,
    pub consumers: &'a std::sync::Arc<crate::compile::ConsumerIndex>,
    pub resources: &'a Resources,
}

/// Why a plugin instance could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginCompileError {
    /// A config value the schema let through but the runtime cannot use.
    #[error("{0}")]
    Invalid(String),
    /// A resource (log file, backend) could not be set up.
    #[error("{0}")]
    Resource(String),
    /// The plugin exists in Kong and in the plugin table but this build does
    /// not run it yet. Compiling it to a no-op would silently drop protection
    /// (authentication, rate limits), so the whole config is refused instead.
    #[error("plugin '{0}' is not supported by this data plane")]
    Unsupported(String),
}

/// The runtime form of a plugin this build does not run yet; never compiled.
#[derive(Debug)]
pub enum Unsupported {}

impl PluginRuntime for Unsupported {
    const PHASES: Phases = Phases::NONE;
}

impl<C> CompilePlugin<C> for Unsupported {
    fn compile(_config: &C, cx: &CompileContext<'_>) -> Result<Self, PluginCompileError> {
        Err(PluginCompileError::Unsupported(cx.instance.name.clone()))
    }
}
