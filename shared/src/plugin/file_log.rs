//! The `file-log` plugin (Kong priority 9, kong-compat §7.2): its config and
//! schema, and its runtime: one compact JSON line of Kong's log record per
//! request, appended in the log phase to the file the data plane keeps open
//! for the path (shared by every instance naming it; rotation is the file
//! sink's business, see `data-plane/src/plugins/resources.rs`).

use super::null_as_default;
use crate::runtime::{
    CompileContext, CompilePlugin, LineSink, Phases, PluginCompileError, PluginRuntime,
    RequestContext,
};
use crate::schema::engine::{Field, Record, Rule, Subschema};
use crate::schema::typedefs::{self, HTTP_PROTOCOLS, PROTOCOLS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileLogConfig {
    /// File the JSON lines are appended to (created with mode 0644).
    pub path: String,
    /// Close and reopen the file for every entry (log rotation).
    #[serde(deserialize_with = "null_as_default")]
    pub reopen: bool,
    /// Accepted for compatibility; Tollgate runs no Lua.
    pub custom_fields_by_lua: Option<BTreeMap<String, String>>,
}

fn check_filename(value: &Value) -> Result<(), String> {
    let path = value.as_str().unwrap_or_default();
    if !path.is_empty() && !path.contains(['*', '&', '%', '`']) {
        Ok(())
    } else {
        Err("not a valid filename".into())
    }
}

pub(crate) fn subschema() -> Subschema {
    Subschema {
        fields: vec![
            typedefs::protocols(&PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record(
                "config",
                Record::new(vec![
                    Field::string("path")
                        .required()
                        .rule(Rule::Pattern(check_filename))
                        .err("not a valid filename"),
                    Field::boolean("reopen").required().default(json!(false)),
                    typedefs::lua_code("custom_fields_by_lua"),
                ]),
            ),
        ],
        checks: vec![],
    }
}

/// A compiled `file-log` instance: the sink of its path.
#[derive(Debug)]
pub struct FileLog {
    sink: Arc<dyn LineSink>,
}

impl PluginRuntime for FileLog {
    const PHASES: Phases = Phases::LOG_RECORD;

    fn log(&self, ctx: &RequestContext) {
        self.sink.write_line(ctx.log_record());
    }
}

impl CompilePlugin<FileLogConfig> for FileLog {
    fn compile(
        config: &FileLogConfig,
        cx: &CompileContext<'_>,
    ) -> Result<Self, PluginCompileError> {
        let sink = cx
            .resources
            .log_file(&config.path, config.reopen)
            .map_err(PluginCompileError::Resource)?;
        Ok(FileLog { sink })
    }
}
