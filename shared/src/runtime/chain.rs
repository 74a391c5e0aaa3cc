//! The plugin chain of one route: which instance of each plugin applies
//! (global/service/route/consumer combinations, most specific wins) and the
//! order they run in (descending priority), per kong-compat §3, and the
//! phase runners that use that selection.

use super::context::Selection;
use super::{
    Decision, Phase, Phases, PluginError, Protocol, ProtocolSet, RequestContext, ResponseHead,
};
use crate::plugin::Plugin;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// One enabled plugin instance with its scope, as compiled from the config.
#[derive(Debug)]
pub struct PluginInstance {
    pub id: Uuid,
    pub name: String,
    pub priority: i32,
    pub protocols: ProtocolSet,
    pub route: Option<Uuid>,
    pub service: Option<Uuid>,
    pub consumer: Option<Uuid>,
    pub plugin: Plugin,
}

/// The instance of one plugin that applies on a route, without a consumer
/// (`default`) and for each consumer that has a more specific instance.
#[derive(Debug)]
pub struct ChainStep {
    pub name: String,
    pub priority: i32,
    pub default: Option<Arc<PluginInstance>>,
    pub by_consumer: HashMap<Uuid, Arc<PluginInstance>>,
}

impl ChainStep {
    pub fn instance_for(&self, consumer: Option<Uuid>) -> Option<&Arc<PluginInstance>> {
        match consumer {
            Some(consumer) if !self.by_consumer.is_empty() => {
                self.by_consumer.get(&consumer).or(self.default.as_ref())
            }
            _ => self.default.as_ref(),
        }
    }
}

/// A plugin's access handler failed; the request gets Kong's 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFailure {
    pub plugin: &'static str,
    pub error: PluginError,
}

/// The steps of a route in execution order.
#[derive(Debug, Default)]
pub struct PluginChain {
    pub steps: Vec<ChainStep>,
    /// The union of the phases of every instance in the chain.
    pub phases: Phases,
    /// Some instance reads the request body in `access`.
    pub reads_body: bool,
    /// The instances with a `response` or `log` phase when they are the same
    /// for every request: no step has consumer-scoped instances and each of
    /// them takes every protocol. `access` then hands the request this list
    /// instead of building one (a `Vec` grown and an `Arc` cloned per
    /// instance, per request). `None`: selected per request.
    fixed_selection: Option<Arc<[Arc<PluginInstance>]>>,
}

impl PluginChain {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether any instance of this chain runs in `phase`.
    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(phase)
    }

    /// The rewrite phase (global chain only): the first rejection stops it.
    pub fn rewrite(&self, ctx: &mut RequestContext) -> Decision {
        for step in &self.steps {
            let Some(instance) = step.default.as_ref() else {
                continue;
            };
            if !instance.plugin.phases().contains(Phase::Rewrite)
                || !instance.protocols.contains(ctx.protocol)
            {
                continue;
            }
            ctx.running = Some(instance.plugin.name());
            let decision = instance.plugin.rewrite(ctx);
            ctx.running = None;
            if let Decision::Respond(rejection) = decision {
                return Decision::Respond(rejection);
            }
        }
        Decision::Continue
    }

    /// The access phase. Selects the instance of every step (reading the
    /// consumer before each, since an authentication step may set it), runs
    /// their access handlers until one answers or fails, and keeps selecting
    /// after that so the `response` and `log` phases run for every plugin
    /// that applies to the request, as Kong does for a request a plugin
    /// answered itself.
    pub async fn access(&self, ctx: &mut RequestContext) -> Result<Decision, PluginFailure> {
        let mut outcome: Result<Decision, PluginFailure> = Ok(Decision::Continue);
        let select = match &self.fixed_selection {
            Some(fixed) if ctx.selected.as_slice().is_empty() => {
                ctx.selected = Selection::Fixed(Arc::clone(fixed));
                false
            }
            _ => true,
        };
        for step in &self.steps {
            let Some(instance) = step.instance_for(ctx.consumer_id()) else {
                continue;
            };
            if !instance.protocols.contains(ctx.protocol) {
                continue;
            }
            let phases = instance.plugin.phases();
            if select && (phases.contains(Phase::Response) || phases.contains(Phase::Log)) {
                ctx.selected.push(Arc::clone(instance));
            }
            let undecided = matches!(outcome, Ok(Decision::Continue));
            if !undecided || !phases.contains(Phase::Access) {
                continue;
            }
            let name = instance.plugin.name();
            ctx.running = Some(name);
            outcome = instance
                .plugin
                .access(ctx)
                .await
                .map_err(|error| PluginFailure {
                    plugin: name,
                    error,
                });
            ctx.running = None;
        }
        outcome
    }

    /// The response phase over the instances selected in `access`.
    pub fn response(
        ctx: &mut RequestContext,
        status: &mut http::StatusCode,
        headers: &mut http::HeaderMap,
    ) {
        if ctx.selected.as_slice().is_empty() {
            return;
        }
        let selected = std::mem::take(&mut ctx.selected);
        for instance in selected.as_slice() {
            if instance.plugin.phases().contains(Phase::Response) {
                ctx.running = Some(instance.plugin.name());
                instance
                    .plugin
                    .response(ctx, ResponseHead { status, headers });
                ctx.running = None;
            }
        }
        ctx.selected = selected;
    }

    /// Whether a selected instance has a response phase.
    pub fn runs_response(ctx: &RequestContext) -> bool {
        Self::selected_run(ctx, Phase::Response)
    }

    /// The log phase over the instances selected in `access`.
    pub fn log(ctx: &RequestContext) {
        for instance in ctx.selected.as_slice() {
            if instance.plugin.phases().contains(Phase::Log) {
                instance.plugin.log(ctx);
            }
        }
    }

    /// Whether the log phase has anything to run for this request.
    pub fn wants_log(ctx: &RequestContext) -> bool {
        Self::selected_run(ctx, Phase::Log)
    }

    /// Whether a selected instance runs `phase`.
    fn selected_run(ctx: &RequestContext, phase: Phase) -> bool {
        ctx.selected
            .as_slice()
            .iter()
            .any(|instance| instance.plugin.phases().contains(phase))
    }

    /// The chain of global instances (no route, service or consumer), which
    /// alone run in the rewrite phase.
    pub fn build_global(candidates: &[&Arc<PluginInstance>]) -> PluginChain {
        let globals: Vec<&Arc<PluginInstance>> = candidates
            .iter()
            .copied()
            .filter(|i| i.route.is_none() && i.service.is_none() && i.consumer.is_none())
            .collect();
        PluginChain::build(Uuid::nil(), None, &globals)
    }

    /// Builds the chain of a route with id `route` whose service is `service`
    /// from the instances that may concern it (the caller pre-filters by scope;
    /// instances scoped to another route or service are ignored here too).
    pub fn build(
        route: Uuid,
        service: Option<Uuid>,
        candidates: &[&Arc<PluginInstance>],
    ) -> PluginChain {
        let mut by_name: HashMap<&str, Vec<&Arc<PluginInstance>>> = HashMap::new();
        for instance in candidates {
            let route_ok = instance.route.is_none_or(|r| r == route);
            let service_ok = instance.service.is_none_or(|s| Some(s) == service);
            if route_ok && service_ok {
                by_name
                    .entry(instance.name.as_str())
                    .or_default()
                    .push(instance);
            }
        }
        let mut steps: Vec<ChainStep> = by_name
            .into_iter()
            .filter_map(|(name, instances)| resolve_step(name, &instances))
            .collect();
        // Descending priority; the name breaks ties so the order is deterministic.
        steps.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        let phases = steps
            .iter()
            .flat_map(|s| s.default.iter().chain(s.by_consumer.values()))
            .fold(Phases::NONE, |acc, i| acc.with(i.plugin.phases()));
        let reads_body = steps
            .iter()
            .flat_map(|s| s.default.iter().chain(s.by_consumer.values()))
            .any(|i| i.plugin.reads_body());
        let every_protocol = |instance: &PluginInstance| {
            [
                Protocol::Http,
                Protocol::Https,
                Protocol::Grpc,
                Protocol::Grpcs,
            ]
            .into_iter()
            .all(|protocol| instance.protocols.contains(protocol))
        };
        let later = |instance: &PluginInstance| {
            let phases = instance.plugin.phases();
            phases.contains(Phase::Response) || phases.contains(Phase::Log)
        };
        let fixed_selection = steps
            .iter()
            .all(|step| {
                step.by_consumer.is_empty()
                    && step
                        .default
                        .as_deref()
                        .is_none_or(|i| !later(i) || every_protocol(i))
            })
            .then(|| {
                steps
                    .iter()
                    .filter_map(|step| step.default.clone())
                    .filter(|instance| later(instance))
                    .collect()
            });
        PluginChain {
            steps,
            phases,
            reads_body,
            fixed_selection,
        }
    }
}

/// Kong's precedence (kong-compat §3.1), most specific first:
/// route+service+consumer, route+consumer, service+consumer, route+service,
/// consumer, route, service, global.
fn rank(instance: &PluginInstance) -> u8 {
    match (
        instance.route.is_some(),
        instance.service.is_some(),
        instance.consumer.is_some(),
    ) {
        (true, true, true) => 0,
        (true, false, true) => 1,
        (false, true, true) => 2,
        (true, true, false) => 3,
        (false, false, true) => 4,
        (true, false, false) => 5,
        (false, true, false) => 6,
        (false, false, false) => 7,
    }
}

fn resolve_step(name: &str, instances: &[&Arc<PluginInstance>]) -> Option<ChainStep> {
    let best_without_consumer = instances
        .iter()
        .filter(|i| i.consumer.is_none())
        .min_by_key(|i| rank(i))
        .map(|i| Arc::clone(i));
    let mut by_consumer: HashMap<Uuid, Arc<PluginInstance>> = HashMap::new();
    for instance in instances {
        let Some(consumer) = instance.consumer else {
            continue;
        };
        let candidate_rank = rank(instance);
        let beats_default = best_without_consumer
            .as_ref()
            .is_none_or(|d| candidate_rank < rank(d));
        if !beats_default {
            continue;
        }
        let better = by_consumer
            .get(&consumer)
            .is_none_or(|current| candidate_rank < rank(current));
        if better {
            by_consumer.insert(consumer, Arc::clone(instance));
        }
    }
    let priority = instances.first().map(|i| i.priority)?;
    if best_without_consumer.is_none() && by_consumer.is_empty() {
        return None;
    }
    Some(ChainStep {
        name: name.to_string(),
        priority,
        default: best_without_consumer,
        by_consumer,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::plugin::{IpRestriction, Plugin};
    use crate::runtime::{Protocol, RequestContext};
    use serde_json::json;

    fn instance(
        n: u128,
        name: &str,
        priority: i32,
        route: Option<u128>,
        service: Option<u128>,
        consumer: Option<u128>,
    ) -> Arc<PluginInstance> {
        Arc::new(PluginInstance {
            id: Uuid::from_u128(n),
            name: name.to_string(),
            priority,
            protocols: ProtocolSet::from_names(&["http", "https"]),
            route: route.map(Uuid::from_u128),
            service: service.map(Uuid::from_u128),
            consumer: consumer.map(Uuid::from_u128),
            plugin: Plugin::IpRestriction(
                IpRestriction::from_config(
                    &serde_json::from_value(json!({"deny": ["1.1.1.1"]})).unwrap(),
                )
                .unwrap(),
            ),
        })
    }

    fn chosen(chain: &PluginChain, name: &str, consumer: Option<u128>) -> Option<u128> {
        chain
            .steps
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.instance_for(consumer.map(Uuid::from_u128)))
            .map(|i| i.id.as_u128())
    }

    const R: u128 = 100;
    const S: u128 = 200;
    const C: u128 = 300;

    #[test]
    fn most_specific_instance_wins() {
        // (instances present, consumer of the request, expected winner id)
        let all = [
            instance(1, "p", 1, Some(R), Some(S), Some(C)),
            instance(2, "p", 1, Some(R), None, Some(C)),
            instance(3, "p", 1, None, Some(S), Some(C)),
            instance(4, "p", 1, Some(R), Some(S), None),
            instance(5, "p", 1, None, None, Some(C)),
            instance(6, "p", 1, Some(R), None, None),
            instance(7, "p", 1, None, Some(S), None),
            instance(8, "p", 1, None, None, None),
        ];
        for drop_first in 0..all.len() {
            let present: Vec<&Arc<PluginInstance>> = all[drop_first..].iter().collect();
            let chain = PluginChain::build(Uuid::from_u128(R), Some(Uuid::from_u128(S)), &present);
            let expected_with_consumer = (drop_first + 1) as u128;
            assert_eq!(chosen(&chain, "p", Some(C)), Some(expected_with_consumer));
            let expected_without = present
                .iter()
                .find(|i| i.consumer.is_none())
                .map(|i| i.id.as_u128());
            assert_eq!(chosen(&chain, "p", None), expected_without);
            assert_eq!(chosen(&chain, "p", Some(999)), expected_without);
        }
    }

    #[test]
    fn instances_of_other_routes_and_services_do_not_apply() {
        let other_route = instance(1, "p", 1, Some(999), None, None);
        let other_service = instance(2, "p", 1, None, Some(999), None);
        let route_other_service = instance(3, "p", 1, Some(R), Some(999), None);
        let chain = PluginChain::build(
            Uuid::from_u128(R),
            Some(Uuid::from_u128(S)),
            &[&other_route, &other_service, &route_other_service],
        );
        assert!(chain.is_empty());
        let service_scoped = instance(4, "p", 1, None, Some(S), None);
        let no_service = PluginChain::build(Uuid::from_u128(R), None, &[&service_scoped]);
        assert!(no_service.is_empty());
    }

    #[test]
    fn steps_run_in_descending_priority() {
        let a = instance(1, "low", 9, None, None, None);
        let b = instance(2, "high", 1450, None, None, None);
        let c = instance(3, "mid", 990, Some(R), None, None);
        let chain = PluginChain::build(Uuid::from_u128(R), None, &[&a, &b, &c]);
        let names: Vec<&str> = chain.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["high", "mid", "low"]);
    }

    fn context(protocol: Protocol) -> RequestContext {
        let (parts, ()) = http::Request::new(()).into_parts();
        let ip = "1.1.1.1".parse().unwrap();
        RequestContext::new(
            parts,
            ip,
            ip,
            protocol,
            http::HeaderValue::from_static("0"),
            std::time::Instant::now(),
        )
    }

    fn run_access(chain: &PluginChain, ctx: &mut RequestContext) -> Decision {
        // The access futures of these plugins are ready at once.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(chain.access(ctx));
        match std::future::Future::poll(future.as_mut(), &mut cx) {
            std::task::Poll::Ready(outcome) => outcome.unwrap(),
            std::task::Poll::Pending => panic!("access did not complete"),
        }
    }

    #[test]
    fn the_later_phases_list_is_fixed_unless_a_consumer_or_protocol_decides_it() {
        // ip-restriction has no response or log phase: nothing to run later.
        let global = instance(1, "p", 1, None, None, None);
        let chain = PluginChain::build(Uuid::from_u128(R), None, &[&global]);
        assert_eq!(chain.fixed_selection.as_deref().map(<[_]>::len), Some(0));
        let mut ctx = context(Protocol::Http);
        run_access(&chain, &mut ctx);
        assert!(ctx.selected.as_slice().is_empty());
        // A consumer-scoped instance: chosen per request.
        let scoped = instance(2, "q", 1, None, None, Some(C));
        let chain = PluginChain::build(Uuid::from_u128(R), None, &[&global, &scoped]);
        assert!(chain.fixed_selection.is_none());
    }

    #[test]
    fn protocols_filter_instances() {
        let mut only_https = instance(1, "p", 1, None, None, None);
        Arc::get_mut(&mut only_https).unwrap().protocols = ProtocolSet::from_names(&["https"]);
        let chain = PluginChain::build(Uuid::from_u128(R), None, &[&only_https]);
        let mut http_request = context(Protocol::Http);
        assert!(matches!(
            run_access(&chain, &mut http_request),
            Decision::Continue
        ));
        let mut https_request = context(Protocol::Https);
        assert!(matches!(
            run_access(&chain, &mut https_request),
            Decision::Respond(_)
        ));
    }
}
