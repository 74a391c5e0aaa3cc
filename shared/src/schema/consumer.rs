//! The `consumers` schema.

use super::engine::{Check, Record};
use super::typedefs;

pub(crate) fn schema() -> Record {
    Record::new(vec![
        typedefs::id(),
        typedefs::timestamp("created_at"),
        typedefs::timestamp("updated_at"),
        typedefs::unique_string("username"),
        typedefs::unique_string("custom_id"),
        typedefs::tags(),
    ])
    .checks(vec![Check::AtLeastOneOf(vec!["custom_id", "username"])])
}
