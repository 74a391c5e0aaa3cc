//! Plugin specs: one typed config per bundled plugin, with Kong's field names
//! and defaults, and the facts the runtime needs about each plugin (priority,
//! allowed scopes, default protocols).

use crate::entity::Plugin;
use crate::validation::FieldErrors;

/// A plugin instance's typed, validated config. A closed set: the data plane
/// compiles each variant into its runtime form.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginSpec {
    Jwt(serde_json::Value),
    RateLimiting(serde_json::Value),
    IpRestriction(serde_json::Value),
    FileLog(serde_json::Value),
    HttpLog(serde_json::Value),
    Prometheus(serde_json::Value),
}

/// The plugins this build bundles, by Kong name.
pub const BUNDLED: [&str; 6] = [
    "jwt",
    "rate-limiting",
    "ip-restriction",
    "file-log",
    "http-log",
    "prometheus",
];

impl PluginSpec {
    /// Parses a validated plugin entity's config into its typed form.
    pub fn from_plugin(plugin: &Plugin) -> Result<PluginSpec, FieldErrors> {
        let config = plugin.config.clone();
        Ok(match plugin.name.as_str() {
            "jwt" => PluginSpec::Jwt(config),
            "rate-limiting" => PluginSpec::RateLimiting(config),
            "ip-restriction" => PluginSpec::IpRestriction(config),
            "file-log" => PluginSpec::FileLog(config),
            "http-log" => PluginSpec::HttpLog(config),
            "prometheus" => PluginSpec::Prometheus(config),
            other => {
                let mut errors = FieldErrors::new();
                errors.add(
                    "name",
                    format!("plugin '{other}' not enabled; add it to the 'plugins' configuration property"),
                );
                return Err(errors);
            }
        })
    }
}
