//! Test-only plugins, compiled in only with the `test-plugins` feature (the
//! test crates enable it; release builds never contain them). They exercise
//! what no bundled plugin covers yet: phase order, consumer-scoped selection,
//! state that survives config swaps, the log phase of answered requests, and
//! a plugin that fails or panics.
#![allow(clippy::panic)]

use crate::runtime::{
    CompileContext, CompilePlugin, ConsumerRef, Decision, LineSink, Phases, PluginCompileError,
    PluginError, PluginRuntime, RequestContext, ResponseHead,
};
use crate::schema::engine::{Field, Record, Subschema};
use crate::schema::typedefs::{self, HTTP_PROTOCOLS, PROTOCOLS};
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn subschema_with(fields: Vec<Field>) -> Subschema {
    Subschema {
        fields: vec![
            typedefs::protocols(&PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record("config", Record::new(fields)),
        ],
        checks: vec![],
    }
}

/// `tollgate-test-counter`: counts requests in a keyed resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CounterConfig {
    pub key: String,
}

pub(crate) fn counter_subschema() -> Subschema {
    subschema_with(vec![Field::string("key").required()])
}

#[derive(Debug)]
pub struct Counter {
    count: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Counted(u64);

impl PluginRuntime for Counter {
    const PHASES: Phases = Phases::ACCESS.with(Phases::RESPONSE);

    async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginError> {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.state.insert(Counted(count));
        Ok(Decision::Continue)
    }

    fn response(&self, ctx: &mut RequestContext, head: ResponseHead<'_>) {
        if let Some(Counted(count)) = ctx.state.get::<Counted>() {
            head.headers
                .insert("x-test-count", HeaderValue::from(*count));
        }
    }
}

impl CompilePlugin<CounterConfig> for Counter {
    fn compile(
        config: &CounterConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        Ok(Counter {
            count: cx.resources.keyed::<AtomicU64>(&config.key),
        })
    }
}

/// `tollgate-test-recorder`: records the phases it ran in and writes them,
/// with the status and consumer, as one line per request in its log phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecorderConfig {
    pub path: String,
    pub tag: Option<String>,
}

pub(crate) fn recorder_subschema() -> Subschema {
    subschema_with(vec![Field::string("path").required(), Field::string("tag")])
}

#[derive(Debug)]
pub struct Recorder {
    sink: Arc<dyn LineSink>,
    tag: String,
}

#[derive(Clone, Default)]
struct Seen(Vec<&'static str>);

impl PluginRuntime for Recorder {
    const PHASES: Phases = Phases::ACCESS
        .with(Phases::RESPONSE)
        .with(Phases::LOG_RECORD);

    async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginError> {
        seen(ctx).push("access");
        Ok(Decision::Continue)
    }

    fn response(&self, ctx: &mut RequestContext, head: ResponseHead<'_>) {
        seen(ctx).push("response");
        if let Ok(tag) = HeaderValue::from_str(&self.tag) {
            head.headers.append("x-test-recorder", tag);
        }
    }

    fn log(&self, ctx: &RequestContext) {
        let phases = ctx
            .state
            .get::<Seen>()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        let line = serde_json::json!({
            "tag": self.tag,
            "phases": phases,
            "status": ctx.status.map(|s| s.as_u16()),
            "consumer": ctx.consumer.as_ref().map(|c| c.username.clone()),
            "plugins": ctx.selected_plugins().collect::<Vec<_>>(),
        });
        self.sink.write_line(line.to_string().as_bytes());
    }
}

fn seen(ctx: &mut RequestContext) -> &mut Vec<&'static str> {
    if ctx.state.get::<Seen>().is_none() {
        ctx.state.insert(Seen::default());
    }
    match ctx.state.get_mut::<Seen>() {
        Some(seen) => &mut seen.0,
        None => unreachable!("inserted above"),
    }
}

impl CompilePlugin<RecorderConfig> for Recorder {
    fn compile(
        config: &RecorderConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        let sink = cx
            .resources
            .log_file(&config.path, false)
            .map_err(PluginCompileError::Resource)?;
        Ok(Recorder {
            sink,
            tag: config
                .tag
                .clone()
                .unwrap_or_else(|| cx.instance.id.to_string()),
        })
    }
}

/// `tollgate-test-fault`: on `x-test-fault: error` its access handler fails,
/// on `x-test-fault: panic` it panics; on `x-test-consumer: NAME` it
/// identifies consumer NAME, and on `x-test-groups: a, b` it authenticates
/// those groups (`RequestContext::authenticated_groups`, empty for an empty
/// value), standing in for an authentication plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {}

pub(crate) fn fault_subschema() -> Subschema {
    subschema_with(vec![])
}

#[derive(Debug)]
pub struct Fault {
    consumers: HashMap<String, ConsumerRef>,
}

impl PluginRuntime for Fault {
    const PHASES: Phases = Phases::ACCESS;

    async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginError> {
        match ctx.headers().get("x-test-fault").map(HeaderValue::as_bytes) {
            Some(b"panic") => panic!("tollgate-test-fault asked to panic"),
            Some(b"error") => return Err(PluginError("asked to fail".into())),
            _ => {}
        }
        let named = ctx
            .headers()
            .get("x-test-consumer")
            .and_then(|v| v.to_str().ok())
            .and_then(|name| self.consumers.get(name))
            .cloned();
        if let Some(consumer) = named {
            ctx.consumer = Some(consumer);
        }
        let groups = ctx
            .headers()
            .get("x-test-groups")
            .and_then(|v| v.to_str().ok())
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect::<Arc<[String]>>()
            });
        if let Some(groups) = groups {
            // As Kong's session plugin: the groups and their header.
            if let Ok(value) = HeaderValue::from_str(&groups.join(", ")) {
                ctx.headers_mut().insert("x-authenticated-groups", value);
            }
            ctx.authenticated_groups = Some(groups);
        }
        Ok(Decision::Continue)
    }
}

impl CompilePlugin<FaultConfig> for Fault {
    fn compile(_config: &FaultConfig, cx: &CompileContext<'_>) -> Result<Self, PluginCompileError> {
        let consumers = cx
            .consumers
            .iter()
            .filter_map(|c| Some((c.username.clone()?, Arc::clone(c))))
            .collect();
        Ok(Fault { consumers })
    }
}
