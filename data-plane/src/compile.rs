//! The data plane's view of the shared compile step
//! (`tollgate_shared::compile`): services bind to this node's upstream pools
//! and plugins get this node's live resources. Everything else (router,
//! plugin chains, certificates, credential indexes) is the code the control
//! plane runs before it accepts a change.

use crate::proxy::upstream::PoolRegistry;
use std::sync::Arc;
use tollgate_shared::runtime::Resources;
use tollgate_shared::Config;

pub use tollgate_shared::compile::{check, CompileError, ConfigMeta};

pub use crate::proxy::{Compiled, CompiledRoute, CompiledService};

/// What the compile step needs from the running data plane; never I/O.
#[derive(Debug, Clone)]
pub struct Deps {
    pub pools: Arc<PoolRegistry>,
    pub resources: Resources,
}

/// Compiles `config` for this node; on any error nothing is returned but
/// every error found.
pub fn compile(
    meta: ConfigMeta,
    config: &Config,
    deps: &Deps,
) -> Result<Compiled, Vec<CompileError>> {
    tollgate_shared::compile::compile(meta, config, &deps.resources, &*deps.pools)
}
