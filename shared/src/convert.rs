//! Conversions between the domain model and the cluster protocol messages.
//!
//! PLACEHOLDER: being written.
