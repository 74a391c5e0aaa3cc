//! The `prometheus` plugin: config (Kong priority 13; every switch off by default).

use super::null_as_default;
use crate::schema::engine::{Field, Record, Subschema};
use crate::schema::typedefs::{self, HTTP_PROTOCOLS, PROTOCOLS};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrometheusConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub per_consumer: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub status_code_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub ai_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub latency_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub bandwidth_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub upstream_health_metrics: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub wasm_metrics: bool,
}

pub(crate) fn subschema() -> Subschema {
    let switch = |name: &'static str| Field::boolean(name).default(json!(false));
    Subschema {
        fields: vec![
            typedefs::protocols(&PROTOCOLS, &HTTP_PROTOCOLS),
            Field::record(
                "config",
                Record::new(vec![
                    switch("per_consumer"),
                    switch("status_code_metrics"),
                    switch("ai_metrics"),
                    switch("latency_metrics"),
                    switch("bandwidth_metrics"),
                    switch("upstream_health_metrics"),
                    switch("wasm_metrics"),
                ]),
            ),
        ],
        checks: vec![],
    }
}
