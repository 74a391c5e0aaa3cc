//! Router conformance tests (kong-compat §2.1–§2.2).
