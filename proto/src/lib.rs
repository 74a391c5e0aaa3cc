//! The cluster protocol between Tollgate's control plane and data planes: the
//! generated protobuf messages and the tonic client/server for the `Sync` stream.
//! This crate holds no logic; conversions to and from the domain model live in
//! `tollgate-shared`.

#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// `tollgate.cluster.v1`: the messages and the `Cluster` service.
pub mod cluster {
    pub mod v1 {
        tonic::include_proto!("tollgate.cluster.v1");
    }
}

pub use cluster::v1;
